"""``MessageFactory``: build a message by kind name, with the concrete type inferred.

``create_message("email", ...)`` is typed through ``Literal`` overloads, so a checker sees an
``EmailMessage``; ``create(EmailMessage, ...)`` is the generic (PEP 695) spelling; new kinds
are added with ``@MessageFactory.register("push")`` without editing this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, TypedDict, Unpack, cast, overload

from notipipe import _messages_py
from notipipe._kinds import Installer, prepare
from notipipe._protocols import Message
from notipipe._select import COMPILED, EmailMessage, SMSMessage, install_kind

__all__ = ["EmailFields", "MessageFactory", "SMSFields"]


class _KindInstance(Protocol):
    """What ``register`` takes, statically: a class with the common fields (``kind`` is optional:
    ``register`` sets it). The rest (a frozen, slotted dataclass, its field types) is checked at
    run time: pyright does not see a class as a dataclass while it is still being decorated
    (``@register(...)`` above ``@dataclass``), so a dataclass protocol here would refuse the
    documented spelling there."""

    @property
    def priority(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def id(self) -> int: ...


class _CommonFields(TypedDict, total=False):
    priority: int
    created_at: float
    id: int


class EmailFields(_CommonFields, total=False):
    """Keyword arguments accepted for an ``"email"`` message."""

    recipient: str
    subject: str
    body: str


class SMSFields(_CommonFields, total=False):
    """Keyword arguments accepted for an ``"sms"`` message."""

    phone_number: str
    body: str


# The built-in classes of both twins, which a factory may be given back under their own names.
_BUILTIN_CLASSES: dict[str, tuple[object, ...]] = {
    "email": (EmailMessage, _messages_py.EmailMessage),
    "sms": (SMSMessage, _messages_py.SMSMessage),
}


class MessageFactory:
    """Creates messages by kind name. Stateless apart from the registry of kinds.

    The built-in kinds are ``"email"`` (``EmailMessage``) and ``"sms"`` (``SMSMessage``).
    A subclass starts with a copy of its parent's registry, so registering on it leaves the
    parent unchanged.
    """

    _kinds: ClassVar[dict[str, Callable[..., Message]]] = {
        "email": EmailMessage,
        "sms": SMSMessage,
    }

    # The twin that gives a registered class its constructor and row (the tests' twin factories
    # name their own).
    _install_kind: ClassVar[Installer] = staticmethod(install_kind)

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._kinds = dict(cls._kinds)

    @overload
    @classmethod
    def create_message(cls, msg_type: Literal["email"], /, **fields: Unpack[EmailFields]) -> EmailMessage: ...
    @overload
    @classmethod
    def create_message(cls, msg_type: Literal["sms"], /, **fields: Unpack[SMSFields]) -> SMSMessage: ...
    @overload
    @classmethod
    def create_message(cls, msg_type: str, /, **fields: object) -> Message: ...
    @classmethod
    def create_message(cls, msg_type: str, /, **fields: object) -> Message:
        """Build a message of kind ``msg_type`` from keyword ``fields`` (all optional).

        Raises ValueError for an unknown kind (listing the known ones), and the message class's
        own TypeError/ValueError, naming the field, for a bad value.
        """
        return create_generic(cls, msg_type, fields)

    @classmethod
    def create[M: Message](cls, kind: type[M], /, **fields: object) -> M:
        """Build a message of class ``kind`` (generic: the result has that type)."""
        if kind not in cls._kinds.values():
            known = ", ".join(k.__name__ for k in cast("list[type]", list(cls._kinds.values())))
            raise ValueError(f"{kind!r} is not a registered message class; registered: {known}")
        return kind(**fields)

    @classmethod
    def register[C: type[_KindInstance]](cls, name: str, *, replace: bool = False) -> Callable[[C], C]:
        """Class decorator: make ``create_message(name, ...)`` build the decorated class, and the
        store keep and read back its instances.

        The class is a frozen, slotted dataclass with the common fields ``priority``,
        ``created_at`` and ``id`` (``BaseMessage`` declares them), each field of a type the store
        keeps (``str``, ``int``, ``float``, ``bool``, or one of them ``| None``); anything else is
        refused here, with a ``TypeError``/``ValueError`` naming the class and the field. Its
        ``__init__`` is replaced by one that checks every value (see ``_kinds``); its ``kind`` is
        set to ``name`` where it declares none. Registering a name that exists raises
        ValueError unless ``replace=True``; the store reads a name's rows as the class last
        registered under it.
        """
        if not isinstance(cast("object", name), str) or not name:
            raise ValueError(f"message type name must be a non-empty str, got {name!r}")

        def decorator(kind: C) -> C:
            if name in cls._kinds and not replace:
                raise ValueError(f"message type {name!r} is already registered ({cls._kinds[name]!r})")
            if not (name in _BUILTIN_CLASSES and kind in _BUILTIN_CLASSES[name]):
                prepare(name, kind, cls._install_kind, replace=replace)
            cls._kinds[name] = cast("Callable[..., Message]", kind)
            return kind

        return decorator

    @classmethod
    def kinds(cls) -> tuple[str, ...]:
        """The registered kind names, sorted."""
        return tuple(sorted(cls._kinds))


def create_generic(factory: type[MessageFactory], msg_type: str, fields: dict[str, object]) -> Message:
    """``create_message`` for any registered kind: look the kind up, call it with ``fields``."""
    try:
        make = factory._kinds[msg_type]
    except (KeyError, TypeError):
        known = ", ".join(repr(k) for k in sorted(factory._kinds))
        raise ValueError(f"unknown message type {msg_type!r}; known types: {known}") from None
    return make(**fields)


if not TYPE_CHECKING and COMPILED:
    # The compiled twin fills built-in messages straight from C arguments (see its docstring);
    # it falls back to create_generic for everything else, so behaviour is the same.
    from notipipe._messages_c import create_message as _compiled_create_message

    MessageFactory.create_message = classmethod(_compiled_create_message)
