"""Kinds beyond e-mail and SMS: how they are declared, checked, stored and read back.

A kind is a frozen, slotted dataclass registered with ``MessageFactory.register(name)``
(``BaseMessage`` declares the common fields for it). ``prepare`` checks the class once, at
registration, and has a twin install its constructor and row: ``_kinds_py`` (the truth) generates
a checked ``__init__`` and ``_row`` from source text; ``_kinds_c`` installs the same, and calls the
class through C in the common case.

``read_row`` turns a stored row of any kind but the built-ins into its alert: the registered
class, or a ``StoredAlert`` for a kind this process has not registered (or a row its class
cannot be built from, logged once per kind and field). ``fields_of`` gives the kind's own fields
of any message, the one way the command line and the dashboard show an alert of any kind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final, final

from notipipe import _messages_py
from notipipe._limits import (
    DEFAULT_PRIORITY,
    TIME_LIMIT,
    not_a_time_error,
    shown,
    surrogate_error,
    type_error,
)

__all__ = [
    "BUILTIN_KINDS",
    "COMMON_FIELDS",
    "ENCODING_VERSION",
    "BaseMessage",
    "KindSpec",
    "StoredAlert",
    "fields_of",
    "is_storable",
    "prepare",
    "read_row",
    "spec_of",
    "with_id",
]

_log = logging.getLogger("notipipe")

#: The fields every message kind has, kept in the store's own columns.
COMMON_FIELDS: Final = frozenset({"priority", "created_at", "id"})
#: The kinds the store keeps in its columns; their names are not a registered kind's.
BUILTIN_KINDS: Final = frozenset({"email", "sms"})
#: The version of the body column's encoding of a registered kind's own fields.
ENCODING_VERSION: Final = 1

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
_INT64_MIN: Final = -(2**63)
_INT64_LIMIT: Final = 2**63
_TIME_LIMIT_FLOAT: Final = float(TIME_LIMIT)
_INF: Final = math.inf
#: The types a field may hold: what every backend keeps as JSON, read back as the same type.
_STORABLE_TYPES: Final = (str, int, float, bool)
#: dataclasses' marker of a field with a default_factory in ``__init__``'s signature.
_HAS_FACTORY: Final[object] = getattr(dataclasses, "_HAS_DEFAULT_FACTORY", object())


@final
@dataclass(frozen=True, slots=True)
class StoredAlert:
    """A stored alert of a kind this process cannot build: its kind's name, the common fields,
    and the kind's own field values as stored (read-only). Readers return it instead of raising,
    so that one unknown row never stops a follower, a durable subscriber or the dashboard."""

    kind: str
    fields: Mapping[str, object] = field(default=_EMPTY)
    priority: int = field(default=3, kw_only=True)
    created_at: float = field(default=0.0, kw_only=True)
    id: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __reduce__(self) -> tuple[object, ...]:
        # A mapping proxy does not pickle; its contents do.
        return _restore, (self.kind, dict(self.fields), self.priority, self.created_at, self.id)


def _restore(kind: str, fields: dict[str, object], priority: int, created_at: float, id: int) -> StoredAlert:
    return StoredAlert(kind, fields, priority=priority, created_at=created_at, id=id)


@dataclass(frozen=True, slots=True)
class BaseMessage:
    """The common fields of a registered kind, keyword-only, so that a kind declares only its own:

    .. code-block:: python

        @MessageFactory.register("push")
        @dataclass(frozen=True, slots=True)
        class PushMessage(BaseMessage):
            device: str
            title: str = ""

    ``priority`` 1 to 5 (default 3), ``created_at`` Unix seconds (default: now, when the
    message is made), ``id`` 0 (not stored yet; the store's messages carry their row id).
    ``kind`` is set by ``register`` from the name the kind is registered under.
    """

    kind: ClassVar[str]

    priority: int = field(default=DEFAULT_PRIORITY, kw_only=True)
    created_at: float = field(default=0.0, kw_only=True)
    id: int = field(default=0, kw_only=True)


def fields_of(message: object) -> dict[str, object]:
    """The kind's own fields of ``message`` (every field but priority, created_at and id), in
    declaration order: ``recipient``/``subject``/``body`` of an e-mail, ``phone_number``/``body``
    of an SMS, a registered kind's own fields, a ``StoredAlert``'s stored values."""
    if isinstance(message, StoredAlert):
        return dict(message.fields)
    names = getattr(message, "__match_args__", None)
    if dataclasses.is_dataclass(message):
        names = tuple(f.name for f in dataclasses.fields(message))
    return {name: getattr(message, name) for name in names or () if name not in COMMON_FIELDS}


# -- what a kind is ----------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class _Field:
    """One field of a kind: its name, the storable type it holds, whether None is allowed too,
    and its default (``dataclasses.MISSING`` for none)."""

    name: str
    type: type
    optional: bool
    default: object
    factory: Callable[[], object] | None
    kw_only: bool

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING and self.factory is None

    @property
    def expected(self) -> str:
        return f"{self.type.__name__} or None" if self.optional else self.type.__name__


@final
@dataclass(frozen=True, slots=True, eq=False)
class KindSpec:
    """A registered kind: its name, class, fields (all, in declaration order), and the generated
    functions the store uses."""

    name: str
    cls: type
    fields: tuple[_Field, ...]
    #: ``with_id(message, id)``: the same message carrying the id it was stored under.
    with_id: Callable[[Any, int], Any]
    #: The kind's own fields, in declaration order (the common ones left out).
    own: tuple[_Field, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "own", tuple(f for f in self.fields if f.name not in COMMON_FIELDS))


# Every class prepared (its code generated once); the classes made storable (every one ever
# registered under a name of its own); the class the store reads each name's rows as. Dicts,
# read without a lock on every save and read; written under _LOCK.
_PREPARED: dict[type, KindSpec] = {}
_BY_CLASS: dict[type, KindSpec] = {}
_BY_NAME: dict[str, KindSpec] = {}
#: ``_BY_CLASS``'s classes, made again at each registration: a batch's types are checked against
#: it in C (``all_of_types``), and a reader never sees it half made.
_STORABLE: frozenset[type] = frozenset()
_LOCK = threading.Lock()


def spec_of(name: str) -> KindSpec | None:
    """The kind the store reads rows named ``name`` as, None if none is registered."""
    return _BY_NAME.get(name)


def is_storable(cls: type) -> bool:
    """Whether instances of ``cls`` (a registered kind) can be saved."""
    return cls in _BY_CLASS


def storable_classes() -> frozenset[type]:
    """The registered kinds' classes (the same set until the next registration)."""
    return _STORABLE


def with_id(message: object, stored_id: int) -> object:
    """A registered kind's ``message``, carrying the id it was stored under."""
    return _BY_CLASS[type(message)].with_id(message, stored_id)


#: A twin's ``install(name, cls, fields)``: gives the checked class its constructor and row,
#: returns its ``with_id`` (see ``_kinds_py``).
type Installer = Callable[[str, type, tuple[_Field, ...]], Callable[[Any, int], Any]]


def prepare(name: str, cls: object, install: Installer, *, replace: bool = False) -> KindSpec:
    """Check ``cls`` as a kind named ``name``, have ``install`` (a twin's) give it its constructor
    and row, and make it the class the store reads ``name``'s rows as. ``TypeError``/``ValueError``
    naming the class and the field for a class that cannot be one; a name another class is
    stored under needs ``replace=True``."""
    global _STORABLE  # replaced whole, under _LOCK
    if not isinstance(cls, type):
        raise TypeError(
            f"{cls!r} cannot be registered as a message kind: it is not a class "
            "(declare the kind as a frozen, slotted dataclass)"
        )
    # Checked before the lock is taken: resolving the annotations runs the class's own code
    # (properties of its metaclass, __class_getitem__ of its types), and no lock is held over it.
    fields = _check_class(name, cls) if cls not in _PREPARED else ()
    with _LOCK:
        spec = _PREPARED.get(cls)
        if spec is not None and spec.name != name:
            raise ValueError(
                f"{cls.__name__} is registered as the kind {spec.name!r}; it cannot be {name!r} too"
            )
        if spec is None:
            spec = _PREPARED[cls] = KindSpec(name, cls, fields, install(name, cls, fields))
        current = _BY_NAME.get(name)
        if name in BUILTIN_KINDS:
            return spec  # made by the factory; e-mail and SMS rows stay the built-ins'
        if current is not None and current.cls is not cls and not replace:
            raise ValueError(
                f"message type {name!r} is already stored as {current.cls.__name__}: "
                "pass replace=True to read its rows as another class"
            )
        _BY_CLASS[cls] = spec
        _STORABLE = frozenset(_BY_CLASS)
        _BY_NAME[name] = spec
        return spec


def _check_class(name: str, cls: type) -> tuple[_Field, ...]:
    what = cls.__name__
    if not dataclasses.is_dataclass(cls):
        raise TypeError(
            f"{what} cannot be registered as a message kind: it is not a dataclass "
            "(declare it with @dataclass(frozen=True, slots=True))"
        )
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{what} cannot be registered as a message kind: it is not frozen (frozen=True)")
    if cls.__dictoffset__:
        raise TypeError(
            f"{what} cannot be registered as a message kind: its instances have a __dict__ "
            "(slots=True, on it and on every base class)"
        )
    own_kind = cls.__dict__.get("kind")
    if own_kind is not None and own_kind != name:
        raise ValueError(f"{what}.kind is {own_kind!r}: it cannot be registered as {name!r}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception as error:  # noqa: BLE001 - any failure to resolve is the class's to fix
        raise TypeError(f"{what}: its field annotations cannot be resolved ({error})") from None
    for hint_name, hint in hints.items():
        if isinstance(hint, dataclasses.InitVar):
            raise TypeError(f"{what}.{hint_name}: an InitVar is not stored; declare a field")
    fields = tuple(_field(what, f, hints[f.name]) for f in dataclasses.fields(cls))
    names = {f.name for f in fields}
    for common in ("priority", "created_at", "id"):
        if common not in names:
            raise TypeError(
                f"{what} has no {common!r} field: every kind has priority, created_at and id "
                "(derive it from notipipe.BaseMessage to inherit them)"
            )
    for f in fields:
        _check_common(what, f)
        _descriptor(cls, f.name)  # every field is a slot
    return fields


def _field(what: str, f: dataclasses.Field[object], hint: object) -> _Field:
    if not f.init:
        raise TypeError(f"{what}.{f.name}: a field with init=False cannot be read back from the store")
    base, optional = _storable(hint)
    if base is None:
        raise TypeError(
            f"{what}.{f.name}: {_hint_name(hint)} cannot be stored; a field holds str, int, float,"
            " bool, or one of them | None"
        )
    factory = None if f.default_factory is dataclasses.MISSING else f.default_factory
    return _Field(f.name, base, optional, f.default, factory, bool(f.kw_only))


def _storable(hint: object) -> tuple[type | None, bool]:
    if hint in _STORABLE_TYPES:
        return typing.cast("type", hint), False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if len(args) == 2 and type(None) in args:
            (other,) = (a for a in args if a is not type(None))
            if other in _STORABLE_TYPES:
                return other, True
    return None, False


def _hint_name(hint: object) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint)


def _check_common(what: str, f: _Field) -> None:
    if f.name in ("priority", "id") and (f.type is not int or f.optional):
        raise TypeError(f"{what}.{f.name}: declared {f.expected}; the common field {f.name!r} is int")
    if f.name == "created_at" and f.type is not float:
        raise TypeError(f"{what}.created_at: declared {f.expected}; the common field 'created_at' is float")


def _descriptor(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            found = klass.__dict__[name]
            if isinstance(found, types.MemberDescriptorType):
                return found
            break
    raise TypeError(f"{cls.__name__}.{name} is not a slot (declare the class with slots=True)")


def _check_value(cls: str, f: _Field, value: object) -> object:
    if value is None and f.optional:
        return None
    kind = f.type
    if kind is float:
        if type(value) is int:  # an int is taken for a float, and kept as one
            try:
                value = float(value)
            except OverflowError:
                raise ValueError(f"{cls}.{f.name}: {shown(value)} is beyond the float range") from None
        if type(value) is not float:
            raise type_error(cls, f.name, value, f.expected)
        if not math.isfinite(value):
            raise ValueError(f"{cls}.{f.name}: {value!r} cannot be stored (a float must be finite)")
        return value
    if type(value) is not kind:  # bool is not an int here, nor an int a bool
        raise type_error(cls, f.name, value, f.expected)
    if kind is int and not _INT64_MIN <= typing.cast("int", value) < _INT64_LIMIT:
        raise ValueError(f"{cls}.{f.name}: {shown(value)} is outside -2**63..2**63-1")
    if kind is str:
        text = typing.cast("str", value)
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError as error:
                raise surrogate_error(cls, f.name, text, error.start) from None
    return value


# The built-ins' own checks: one wording of every error for every kind.
_check_priority = _messages_py._check_priority
_check_id = _messages_py._check_id


def _check_time(cls: str, value: object, now_default: bool) -> float:
    """created_at as the built-ins check it; None (or 0.0 where that is the default) is now."""
    if now_default and type(value) is float and value == 0.0:
        value = None
    return _messages_py._check_time(cls, value)  # type: ignore[arg-type]  # checked there


# -- reading a stored row ----------------------------------------------------------------------

#: The (class or kind, what) pairs warned about already: once each, bounded.
_WARNED: dict[tuple[object, str], object] = {}
_WARNED_LIMIT: Final = 10_000


def _warn_once(key: object, what: str, text: str, *args: object) -> None:
    # setdefault is atomic: of two threads reading such rows at once, exactly one logs.
    if len(_WARNED) >= _WARNED_LIMIT:
        _WARNED.clear()
    mine = object()
    if _WARNED.setdefault((key, what), mine) is mine:
        _log.warning(text, *args)


def _common(row: tuple[object, ...]) -> tuple[int, str, float, int]:
    """A row's id, kind, created_at and priority, checked: ``TypeError``/``ValueError`` for a row
    that is no alert (the reader reports and skips it)."""
    row_id, kind, created_at, priority = row[0], row[1], row[2], row[3]
    if type(kind) is not str:
        raise type_error("row", "kind", kind, "str")
    if type(created_at) is int:
        created_at = float(created_at)
    if type(created_at) is not float:
        raise TypeError(f"created_at: expected float, got {type(created_at).__name__} {shown(created_at)}")
    if not 0.0 <= created_at < _TIME_LIMIT_FLOAT:
        raise not_a_time_error(kind, created_at)
    if type(row_id) is not int:
        raise type_error(kind, "id", row_id, "int")
    return row_id, kind, created_at, _check_priority(kind, priority)


def _decoded(body: object) -> tuple[int | None, dict[str, object] | None]:
    """The version and the fields of a body column holding notipipe's encoding; (None, None) for
    text that is not (another tool's row)."""
    if type(body) is not str or not body.startswith("{"):
        return None, None
    try:
        value = json.loads(body)
    except ValueError:
        return None, None
    if type(value) is not dict or type(value.get("v")) is not int:
        return None, None
    fields = value.get("fields")
    return value["v"], (fields if type(fields) is dict else None)


def read_row(row: tuple[object, ...]) -> object:
    """The alert of a stored row ``(id, kind, created_at, priority, address, subject, body)`` of a
    kind other than the built-ins: its registered class, else a ``StoredAlert``. Raises
    ``TypeError``/``ValueError`` only for a row whose common columns hold no alert."""
    row_id, kind, created_at, priority = _common(row)
    address, subject, body = row[4], row[5], row[6]
    version, stored = _decoded(body)
    spec = _BY_NAME.get(kind)
    raw = {"address": address, "subject": subject, "body": body}
    if version != ENCODING_VERSION or stored is None:
        if spec is not None:
            _warn_once(
                spec.cls,
                "encoding",
                "notipipe: %s rows from id %s do not hold its fields in encoding version %s:"
                " read as StoredAlert",
                kind,
                row_id,
                ENCODING_VERSION,
            )
        return StoredAlert(kind, raw, priority=priority, created_at=created_at, id=row_id)
    if spec is None:
        return StoredAlert(kind, stored, priority=priority, created_at=created_at, id=row_id)
    values: dict[str, object] = {}
    for f in spec.own:
        if f.name in stored:
            values[f.name] = stored[f.name]
        elif f.required:
            _warn_once(
                spec.cls,
                f.name,
                "notipipe: %s rows from id %s lack %r, which has no default: read as StoredAlert",
                kind,
                row_id,
                f.name,
            )
            return StoredAlert(kind, stored, priority=priority, created_at=created_at, id=row_id)
    try:
        return spec.cls(**values, priority=priority, created_at=created_at, id=row_id)
    except (TypeError, ValueError) as error:  # a field's type changed since the row was stored
        _warn_once(
            spec.cls,
            str(error).split(":", 1)[0],
            "notipipe: %s rows from id %s hold values %s refuses (%s): read as StoredAlert",
            kind,
            row_id,
            spec.cls.__name__,
            error,
        )
        return StoredAlert(kind, stored, priority=priority, created_at=created_at, id=row_id)
