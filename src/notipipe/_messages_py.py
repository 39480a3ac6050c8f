"""Pure-Python message records: the annotated twin of ``_messages_c.pyx`` and the type truth.

Both modules define ``EmailMessage`` and ``SMSMessage`` with the same fields, defaults,
validation rules and error messages; ``tests/test_messages.py`` runs against both, and
``tests/test_twins.py`` compares the two modules' classes directly.

A message is frozen from the moment it exists. Calling the class builds and fills the object in
one step (here through the metaclass ``__call__``, in the compiled twin through a vectorcall
entry), so ``__init__`` never runs during construction and refuses when called on a message:
a message's fields are never written twice, which is what makes the compiled twin's objects
safe to read from any number of free threads. ``__new__`` refuses too (an object with no
fields would be a message that is not one), and the classes cannot be subclassed, as the
compiled ``cdef class``es are final.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, final

from notipipe._limits import (
    DEFAULT_PRIORITY,
    ID_LIMIT,
    MAX_ADDRESS,
    MAX_BODY,
    MAX_LOCAL,
    MAX_PHONE,
    MAX_PHONE_DIGITS,
    MAX_PRIORITY,
    MAX_SMS_BODY,
    MAX_SUBJECT,
    MIN_PHONE_DIGITS,
    MIN_PRIORITY,
    TIME_LIMIT,
    assignment_error,
    deletion_error,
    id_error,
    line_break_error,
    new_error,
    not_a_number_error,
    not_a_time_error,
    not_an_address_error,
    priority_error,
    reinit_error,
    surrogate_error,
    too_long_error,
    type_error,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "EmailMessage",
    "SMSMessage",
]

# The limits (MIN_PRIORITY ...) and the error messages are _limits', shared with the compiled twin.

# "Blank" means a control character, a space or any other Unicode white space (str.isspace);
# the compiled twin tests the same set character by character.
_BLANK = re.compile(r"[\s\x00-\x1f\x7f]")
_E164 = re.compile(rf"\+[1-9][0-9]{{{MIN_PHONE_DIGITS - 1},{MAX_PHONE_DIGITS - 1}}}")
_E164_MATCH = _E164.fullmatch
# Alerts reuse a small set of addresses; a regular expression costs as much as building the
# whole record, so addresses that passed are remembered (bounded). A dict, not a set: on a
# free-threaded build a set locks itself for every `in`, where a dict is read without a lock,
# and every message on every thread reads this. Writes are atomic on every CPython build.
# One cache per rule: a string that passed as a phone number is not thereby an e-mail address.
_GOOD_EMAILS: dict[str, None] = {}
_GOOD_PHONES: dict[str, None] = {}
_GOOD_LIMIT: Final = 4096


def _remember(cache: dict[str, None], value: str) -> str:
    if len(cache) < _GOOD_LIMIT:
        cache[value] = None
    return value


_TIME_LIMIT_FLOAT: Final = float(TIME_LIMIT)  # an int is compared with TIME_LIMIT itself
_time = time.time


def _encodable(text: str) -> bool:
    """Whether ``text`` can be encoded to UTF-8 (no surrogate code points); callers test
    ``isascii()`` first, inline, as almost all text is ASCII."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_str(cls: str, field: str, value: object, limit: int) -> str:
    if type(value) is not str:
        raise type_error(cls, field, value, "str")
    if len(value) > limit:
        raise too_long_error(cls, field, value, limit)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as error:
            raise surrogate_error(cls, field, value, error.start) from None
    return value


def _check_email(value: object) -> str:
    address = _check_str("EmailMessage", "recipient", value, MAX_ADDRESS)
    if not address or address in _GOOD_EMAILS:  # empty: the default distribution list
        return address
    local, _, domain = address.partition("@")
    if not (
        0 < len(local) <= MAX_LOCAL
        and domain
        and "@" not in domain
        and "." in domain
        and domain[0] != "."
        and domain[-1] != "."
        and ".." not in domain
        and _BLANK.search(address) is None
    ):
        raise not_an_address_error(address)
    return _remember(_GOOD_EMAILS, address)


def _check_phone(value: object) -> str:
    number = _check_str("SMSMessage", "phone_number", value, MAX_PHONE)
    if not number or number in _GOOD_PHONES:
        return number
    if _E164_MATCH(number) is None:
        raise not_a_number_error(number)
    return _remember(_GOOD_PHONES, number)


def _has_line_break(text: str) -> bool:
    """Whether ``text`` holds a line break: any character ``str.splitlines()`` splits at (LF, CR,
    VT, FF, U+001C..U+001E, NEL, U+2028, U+2029); the compiled twin tests the same set."""
    return bool(text) and text.splitlines() != [text]


def _check_subject(value: object) -> str:
    subject = _check_str("EmailMessage", "subject", value, MAX_SUBJECT)
    if _has_line_break(subject):
        raise line_break_error(subject)
    return subject


def _check_priority(cls: str, value: object) -> int:
    if type(value) is not int:  # bool is an int subclass, and rejected on purpose
        raise type_error(cls, "priority", value, "int")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise priority_error(cls, value)
    return value


def _check_id(cls: str, value: object) -> int:
    if type(value) is not int:
        raise type_error(cls, "id", value, "int")
    if not 0 <= value < ID_LIMIT:
        raise id_error(cls, value)
    return value


def _check_time(cls: str, value: float | None) -> float:
    if value is None:
        return time.time()
    if type(value) is not float and type(value) is not int:
        raise type_error(cls, "created_at", value, "float")
    # An int is range-checked before float() would overflow on one beyond the float range.
    # -0.0 is refused with the negative times (0.0 <= -0.0 holds, its sign does not).
    if not (
        0.0 <= value < _TIME_LIMIT_FLOAT and math.copysign(1.0, value) > 0.0
        if type(value) is float
        else 0 <= value < TIME_LIMIT
    ):
        raise not_a_time_error(cls, value)  # also NaN, inf
    return float(value)


# -- the classes' behaviour as types -----------------------------------------------------------
# The compiled classes are static, final, immutable types; this metaclass gives the pure ones
# the same behaviour and the same errors. Type checkers see plain classes (the TYPE_CHECKING
# branch below): the constructors they check are the ``__init__`` signatures.

_SEALED: set[type] = set()  # the finished message classes


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _MessageType(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _MessageType:
        for base in bases:
            if base in _SEALED:
                raise TypeError(f"type '{_type_name(base)}' is not an acceptable base type")
        return super().__new__(mcls, name, bases, namespace)

    def __setattr__(cls, name: str, value: object) -> None:
        if cls in _SEALED:
            raise TypeError(f"cannot set {name!r} attribute of immutable type '{_type_name(cls)}'")
        super().__setattr__(name, value)

    def __delattr__(cls, name: str) -> None:
        if cls in _SEALED:
            raise TypeError(f"cannot set {name!r} attribute of immutable type '{_type_name(cls)}'")
        super().__delattr__(name)


_new = object.__new__


def _construct_email(
    recipient: str = "",
    subject: str = "",
    body: str = "",
    *,
    priority: int = DEFAULT_PRIORITY,
    created_at: float | None = None,
    id: int = 0,
) -> EmailMessage:
    self = _new(EmailMessage)
    # Fields are written once, through the slot descriptors, which is what a frozen
    # dataclass's own __init__ does via object.__setattr__, only cheaper.
    if (  # the common case, checked inline; anything else takes the path that explains
        type(subject) is str
        and type(body) is str
        and type(priority) is int
        and MIN_PRIORITY <= priority <= MAX_PRIORITY
        and type(id) is int
        and 0 <= id < ID_LIMIT
        and (created_at is None or (type(created_at) is float and 0.0 < created_at < _TIME_LIMIT_FLOAT))
        and len(subject) <= MAX_SUBJECT
        and len(body) <= MAX_BODY
        and subject.isprintable()  # no line break is printable; a tab takes the slow path
        and (subject.isascii() or _encodable(subject))
        and (body.isascii() or _encodable(body))
    ):
        _set_email_recipient(self, _check_email(recipient))
        _set_email_subject(self, subject)
        _set_email_body(self, body)
        _set_email_priority(self, priority)
        _set_email_created_at(self, _time() if created_at is None else created_at)
        _set_email_id(self, id)
        return self
    _set_email_recipient(self, _check_email(recipient))
    _set_email_subject(self, _check_subject(subject))
    _set_email_body(self, _check_str("EmailMessage", "body", body, MAX_BODY))
    _set_email_priority(self, _check_priority("EmailMessage", priority))
    _set_email_created_at(self, _check_time("EmailMessage", created_at))
    _set_email_id(self, _check_id("EmailMessage", id))
    return self


def _construct_sms(
    phone_number: str = "",
    body: str = "",
    *,
    priority: int = DEFAULT_PRIORITY,
    created_at: float | None = None,
    id: int = 0,
) -> SMSMessage:
    self = _new(SMSMessage)
    if (  # the common case, checked inline; anything else takes the path that explains
        type(phone_number) is str
        and (not phone_number or phone_number in _GOOD_PHONES)
        and type(body) is str
        and len(body) <= MAX_SMS_BODY
        and type(priority) is int
        and MIN_PRIORITY <= priority <= MAX_PRIORITY
        and type(id) is int
        and 0 <= id < ID_LIMIT
        and (created_at is None or (type(created_at) is float and 0.0 < created_at < _TIME_LIMIT_FLOAT))
        and (body.isascii() or _encodable(body))
    ):
        _set_sms_phone_number(self, phone_number)  # empty, or validated before
        _set_sms_body(self, body)
        _set_sms_priority(self, priority)
        _set_sms_created_at(self, _time() if created_at is None else created_at)
        _set_sms_id(self, id)
        return self
    _set_sms_phone_number(self, _check_phone(phone_number))
    _set_sms_body(self, _check_str("SMSMessage", "body", body, MAX_SMS_BODY))
    _set_sms_priority(self, _check_priority("SMSMessage", priority))
    _set_sms_created_at(self, _check_time("SMSMessage", created_at))
    _set_sms_id(self, _check_id("SMSMessage", id))
    return self


# The compiled twin binds unusual calls (a keyword given twice, an unknown one, too many
# positionals) with these: Python's own binding errors, worded exactly as for the pure classes.
def _email_arguments(
    recipient: object = "",
    subject: object = "",
    body: object = "",
    *,
    priority: object = DEFAULT_PRIORITY,
    created_at: object = None,
    id: object = 0,
) -> tuple[object, ...]:
    return recipient, subject, body, priority, created_at, id


def _sms_arguments(
    phone_number: object = "",
    body: object = "",
    *,
    priority: object = DEFAULT_PRIORITY,
    created_at: object = None,
    id: object = 0,
) -> tuple[object, ...]:
    return phone_number, body, priority, created_at, id


# Argument errors name the function's __qualname__: "EmailMessage() got an unexpected keyword
# argument 'colour'", as a plain class call would say it.
_construct_email.__qualname__ = _email_arguments.__qualname__ = "EmailMessage"
_construct_sms.__qualname__ = _sms_arguments.__qualname__ = "SMSMessage"

if TYPE_CHECKING:  # checkers take the constructors from __init__, not a metaclass __call__
    _EmailType = _MessageType
    _SMSType = _MessageType
else:

    class _EmailType(_MessageType):
        __call__ = staticmethod(_construct_email)

    class _SMSType(_MessageType):
        __call__ = staticmethod(_construct_sms)


# A message's values in field order, as pickled.
type _EmailValues = tuple[str, str, str, int, float, int]
type _SMSValues = tuple[str, str, int, float, int]

# The fields' records (dataclasses.fields) describe the constructor: defaults, and priority,
# created_at and id keyword-only. __match_args__ is spelled out, as it has always held all the
# fields (a dataclass would leave the keyword-only ones out).


@final  # as the compiled twin, a final cdef class
@dataclass(slots=True, frozen=True, init=False)
class EmailMessage(metaclass=_EmailType):
    """An e-mail alert. Frozen, slotted, no ``__dict__``.

    Defaults: empty ``recipient`` (the dashboard's default distribution list), empty
    ``subject`` and ``body``, priority 3, ``created_at`` now, ``id`` 0 (not stored yet; the
    store's messages carry their row id).
    """

    kind: ClassVar[str] = "email"
    __match_args__ = ("recipient", "subject", "body", "priority", "created_at", "id")

    recipient: str = ""
    subject: str = ""
    body: str = ""
    priority: int = field(default=DEFAULT_PRIORITY, kw_only=True)
    created_at: float = field(default_factory=time.time, kw_only=True)
    id: int = field(default=0, kw_only=True)

    if TYPE_CHECKING:  # the constructor's signature, as type checkers see it

        def __init__(
            self,
            recipient: str = "",
            subject: str = "",
            body: str = "",
            *,
            priority: int = DEFAULT_PRIORITY,
            created_at: float | None = None,
            id: int = 0,
        ) -> None: ...

    else:

        def __init__(self, /, *args, **kwargs):
            # Calling the class never runs this (see the module docstring): this is a second
            # initialisation, refused.
            raise reinit_error("EmailMessage")

    def _row(self) -> tuple[str, float, int, str, str, str]:
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("email", self.created_at, self.priority, self.recipient, self.subject, self.body)

    def __reduce__(self) -> tuple[Callable[[_EmailValues], EmailMessage], tuple[_EmailValues]]:
        # Unpickling and copying call the class: the values are validated again, and no
        # existing message is ever written to.
        values = (self.recipient, self.subject, self.body, self.priority, self.created_at, self.id)
        return _restore_email, (values,)

    def __replace__(self, /, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@final
@dataclass(slots=True, frozen=True, init=False)
class SMSMessage(metaclass=_SMSType):
    """An SMS alert. Frozen, slotted, no ``__dict__``.

    Defaults: empty ``phone_number`` (the on-call rota), empty ``body``, priority 3,
    ``created_at`` now, ``id`` 0. The body holds at most ``MAX_SMS_BODY`` characters.
    """

    kind: ClassVar[str] = "sms"
    __match_args__ = ("phone_number", "body", "priority", "created_at", "id")

    phone_number: str = ""
    body: str = ""
    priority: int = field(default=DEFAULT_PRIORITY, kw_only=True)
    created_at: float = field(default_factory=time.time, kw_only=True)
    id: int = field(default=0, kw_only=True)

    if TYPE_CHECKING:

        def __init__(
            self,
            phone_number: str = "",
            body: str = "",
            *,
            priority: int = DEFAULT_PRIORITY,
            created_at: float | None = None,
            id: int = 0,
        ) -> None: ...

    else:

        def __init__(self, /, *args, **kwargs):
            raise reinit_error("SMSMessage")  # see EmailMessage.__init__

    def _row(self) -> tuple[str, float, int, str, str, str]:
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("sms", self.created_at, self.priority, self.phone_number, "", self.body)

    def __reduce__(self) -> tuple[Callable[[_SMSValues], SMSMessage], tuple[_SMSValues]]:
        return _restore_sms, ((self.phone_number, self.body, self.priority, self.created_at, self.id),)

    def __replace__(self, /, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


def _restore_email(values: _EmailValues) -> EmailMessage:
    recipient, subject, body, priority, created_at, id = values
    return EmailMessage(recipient, subject, body, priority=priority, created_at=created_at, id=id)


def _restore_sms(values: _SMSValues) -> SMSMessage:
    phone_number, body, priority, created_at, id = values
    return SMSMessage(phone_number, body, priority=priority, created_at=created_at, id=id)


def _refuse_assignment(self: object, name: str, value: object) -> None:
    raise assignment_error(name)


def _refuse_deletion(self: object, name: str) -> None:
    raise deletion_error(name)


for _cls in (EmailMessage, SMSMessage):
    # dataclass's own frozen __setattr__ uses zero-argument super(), which breaks on the class
    # that slots=True rebuilds (CPython gh-90562 on 3.12): assigning a non-field raised
    # TypeError there.
    type.__setattr__(_cls, "__setattr__", _refuse_assignment)
    type.__setattr__(_cls, "__delattr__", _refuse_deletion)
    # slots=True adds state methods for pickling; __reduce__ replaces them, and a __setstate__
    # would be a way to write to a frozen message.
    for _name in ("__getstate__", "__setstate__"):
        if _name in _cls.__dict__:
            type.__delattr__(_cls, _name)

if not TYPE_CHECKING:  # unannotated, so their signatures read as the compiled types' tp_new

    def _refuse_new_email(*args, **kwargs):
        raise new_error("EmailMessage")

    def _refuse_new_sms(*args, **kwargs):
        raise new_error("SMSMessage")

    type.__setattr__(EmailMessage, "__new__", staticmethod(_refuse_new_email))
    type.__setattr__(SMSMessage, "__new__", staticmethod(_refuse_new_sms))

# inspect.signature(cls) would otherwise read the metaclass __call__ (and drop its first
# parameter, taking it for the class).
type.__setattr__(EmailMessage, "__signature__", inspect.signature(_construct_email))
type.__setattr__(SMSMessage, "__signature__", inspect.signature(_construct_sms))
_SEALED.update((EmailMessage, SMSMessage))

# The slot descriptors' __set__, looked up once (slots=True builds a new class, so after it).
_set_email_recipient = EmailMessage.__dict__["recipient"].__set__
_set_email_subject = EmailMessage.__dict__["subject"].__set__
_set_email_body = EmailMessage.__dict__["body"].__set__
_set_email_priority = EmailMessage.__dict__["priority"].__set__
_set_email_created_at = EmailMessage.__dict__["created_at"].__set__
_set_email_id = EmailMessage.__dict__["id"].__set__
_set_sms_phone_number = SMSMessage.__dict__["phone_number"].__set__
_set_sms_body = SMSMessage.__dict__["body"].__set__
_set_sms_priority = SMSMessage.__dict__["priority"].__set__
_set_sms_created_at = SMSMessage.__dict__["created_at"].__set__
_set_sms_id = SMSMessage.__dict__["id"].__set__
