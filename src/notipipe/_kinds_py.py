"""The pure twin of a registered kind's constructor and row (``_kinds_c`` is the compiled one).

``install`` generates, for a class ``_kinds.prepare`` has checked, two functions compiled from
source text (with a ``linecache`` entry, so tracebacks show their lines), as attrs does:

* ``__init__``: the dataclass's own signature, each value checked as the store needs it (one
  inline test of the whole common case, then a path that explains the first bad field), each
  field written once through its slot descriptor;
* ``_row``: the store's row ``(kind, created_at, priority, "", "", encoded)``, the kind's own
  fields encoded as the versioned JSON object ``{"v": 1, "fields": {...}}`` in the body column.

``rows(batch)`` is the writer's rows of a batch: each message's ``_row()``.

This module is the type truth and the behaviour's: the compiled twin installs these same
functions, then calls the class through C where the call and its values are the common case.
"""

from __future__ import annotations

import dataclasses
import linecache
import time
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

from notipipe._kinds import (
    _HAS_FACTORY,
    _INF,
    _INT64_LIMIT,
    _INT64_MIN,
    _TIME_LIMIT_FLOAT,
    COMMON_FIELDS,
    ENCODING_VERSION,
    _check_id,
    _check_priority,
    _check_time,
    _check_value,
    _descriptor,
    _Field,
)
from notipipe._limits import ID_LIMIT, MAX_PRIORITY, MIN_PRIORITY

__all__ = ["install", "rows"]


def install(name: str, cls: type, fields: tuple[_Field, ...]) -> Callable[[Any, int], Any]:
    """Give ``cls`` (checked by ``_kinds.prepare`` as the kind ``name``) its generated
    ``__init__`` and ``_row``, and its ``kind`` where it declares none; return its ``with_id``."""
    what = cls.__name__
    env: dict[str, object] = {
        "_C": what,
        "_cls": cls,
        "_new": object.__new__,
        "_time": time.time,
        "_encodable": _encodable,
        "_enc": encode_basestring_ascii,
        "_n_enc": _null_or(encode_basestring_ascii),
        "_n_int": _null_or(int.__repr__),
        "_n_float": _null_or(float.__repr__),
        "_BOOL": ("false", "true"),
        "_n_bool": _null_or(("false", "true").__getitem__),
        "_INF": _INF,
        "_I64MIN": _INT64_MIN,
        "_I64LIM": _INT64_LIMIT,
        "_IDLIM": ID_LIMIT,
        "_PMIN": MIN_PRIORITY,
        "_PMAX": MAX_PRIORITY,
        "_TLIM": _TIME_LIMIT_FLOAT,
        "_FACTORY": _HAS_FACTORY,
        "_check": _check_value,
        "_check_priority": _check_priority,
        "_check_id": _check_id,
        "_check_time": _check_time,
    }
    for f in fields:
        env[f"_s_{f.name}"] = _descriptor(cls, f.name).__set__
        env[f"_d_{f.name}"] = f.default
        env[f"_f_{f.name}"] = f.factory
        env[f"_t_{f.name}"] = f
    init = _compile(f"__init__ of {what}", _init_source(cls, fields), env, "__init__")
    original = cls.__dict__.get("__init__")
    init.__annotations__ = dict(getattr(original, "__annotations__", {}))
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = getattr(original, "__doc__", None)
    row = _compile(f"_row of {what}", _row_source(name, fields), env, "_row")
    row.__qualname__ = f"{cls.__qualname__}._row"
    row.__module__ = cls.__module__
    copy = _compile(f"with_id of {what}", _with_id_source(fields), env, "with_id")
    type.__setattr__(cls, "__init__", init)
    type.__setattr__(cls, "_row", row)
    if "kind" not in cls.__dict__:
        type.__setattr__(cls, "kind", name)
    return copy  # type: ignore[no-any-return]


def _compile(label: str, source: str, env: dict[str, object], function: str) -> Any:
    filename = f"<notipipe generated {label}>"
    namespace: dict[str, object] = {}
    exec(compile(source, filename, "exec"), env, namespace)
    # Tracebacks and inspect.getsource read the lines from here.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return namespace[function]


def _parameter(f: _Field) -> str:
    if f.factory is not None:
        return f"{f.name}=_FACTORY"
    if f.default is not dataclasses.MISSING:
        return f"{f.name}=_d_{f.name}"
    return f.name


def _signature(fields: tuple[_Field, ...]) -> str:
    positional = [_parameter(f) for f in fields if not f.kw_only]
    keyword = [_parameter(f) for f in fields if f.kw_only]
    return ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])


def _now_default(f: _Field) -> bool:
    """Whether created_at's default means "now": None or 0.0 declared."""
    return f.default is None or (type(f.default) is float and f.default == 0.0)


def _fast_test(f: _Field) -> str:
    """The inline test of a value in the common case (the path that explains handles the rest)."""
    n = f.name
    if n == "priority":
        return f"type({n}) is int and _PMIN <= {n} <= _PMAX"
    if n == "id":
        return f"type({n}) is int and 0 <= {n} < _IDLIM"
    if n == "created_at":
        now = f"{n} is None or {n} is _d_{n} or " if _now_default(f) else f"{n} is None or "
        return f"({now}(type({n}) is float and 0.0 < {n} < _TLIM))"
    test = {
        str: f"type({n}) is str and ({n}.isascii() or _encodable({n}))",
        int: f"type({n}) is int and _I64MIN <= {n} < _I64LIM",
        float: f"type({n}) is float and -_INF < {n} < _INF",
        bool: f"type({n}) is bool",
    }[f.type]
    return f"({n} is None or ({test}))" if f.optional else f"({test})"


def _fast_value(f: _Field) -> str:
    n = f.name
    if n == "created_at":
        now = f"{n} is None or {n} is _d_{n}" if _now_default(f) else f"{n} is None"
        return f"_time() if {now} else {n}"
    return n


def _slow_value(f: _Field) -> str:
    n = f.name
    if n == "priority":
        return f"_check_priority(_C, {n})"
    if n == "id":
        return f"_check_id(_C, {n})"
    if n == "created_at":
        return f"_check_time(_C, {n}, {_now_default(f)})"
    return f"_check(_C, _t_{n}, {n})"


def _init_source(cls: type, fields: tuple[_Field, ...]) -> str:
    lines = [f"def __init__({_signature(fields)}):"]
    lines += [f"    if {f.name} is _FACTORY: {f.name} = _f_{f.name}()" for f in fields if f.factory]
    lines.append("    if (  # the common case, checked inline; anything else takes the path that explains")
    lines += [f"        {'and ' if i else ''}{_fast_test(f)}" for i, f in enumerate(fields)]
    lines.append("    ):")
    lines += [f"        _s_{f.name}(self, {_fast_value(f)})" for f in fields]
    lines.append("    else:")
    lines += [f"        _s_{f.name}(self, {_slow_value(f)})" for f in fields]
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    return "\n".join(lines) + "\n"


def _encoded(f: _Field) -> str:
    """The f-string replacement field giving the JSON text of the field's value."""
    v = f"self.{f.name}"
    if f.optional:
        return "{" + {str: "_n_enc", int: "_n_int", float: "_n_float", bool: "_n_bool"}[f.type] + f"({v})}}"
    return {str: f"{{_enc({v})}}", int: f"{{{v}}}", float: f"{{{v}!r}}", bool: f"{{_BOOL[{v}]}}"}[f.type]


def rows(batch: Iterable[Any]) -> list[Any]:
    """The store's row of each message of ``batch``, in order: what its class's ``_row`` gives
    (an error from one is raised as it is)."""
    return [m._row() for m in batch]


def _row_source(name: str, fields: tuple[_Field, ...]) -> str:
    members = [
        encode_basestring_ascii(f.name).replace("{", "{{").replace("}", "}}") + ": " + _encoded(f)
        for f in fields
        if f.name not in COMMON_FIELDS
    ]
    body = '{{"v": ' + str(ENCODING_VERSION) + ', "fields": {{' + ", ".join(members) + "}}}}"
    return (
        "def _row(self):\n"
        '    """The store\'s row: (kind, created_at, priority, "", "", the fields as JSON)."""\n'
        f"    return ({name!r}, self.created_at, self.priority, '', '', f{body!r})\n"
    )


def _with_id_source(fields: tuple[_Field, ...]) -> str:
    lines = ["def with_id(self, id):", "    copy = _new(_cls)"]
    lines += [f"    _s_{f.name}(copy, self.{f.name})" for f in fields if f.name != "id"]
    lines += ["    _s_id(copy, id)", "    return copy"]
    return "\n".join(lines) + "\n"


def _null_or(encode: Callable[[Any], str]) -> Callable[[object], str]:
    def encoded(value: object) -> str:
        return "null" if value is None else encode(value)

    return encoded


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
