"""Pure-Python message records: the annotated twin of ``_messages_c.pyx`` and the type truth.

Both modules define ``EmailMessage`` and ``SMSMessage`` with the same fields, defaults,
validation rules and error messages; ``tests/test_messages.py`` runs against both.
"""

from __future__ import annotations

import re
import time
from dataclasses import FrozenInstanceError, dataclass
from typing import ClassVar, Final, final

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "EmailMessage",
    "SMSMessage",
]

#: Priorities run from 1 (informational) to 5 (page someone now).
MIN_PRIORITY: Final = 1
MAX_PRIORITY: Final = 5
DEFAULT_PRIORITY: Final = 3
#: One GSM-7 SMS segment; longer alerts belong in an e-mail.
MAX_SMS_BODY: Final = 160
#: RFC 5322 recommends 78 characters a line; 255 keeps subjects on one dashboard row.
MAX_SUBJECT: Final = 255
#: RFC 5321 limits: 64 for the local part, 254 for the whole path.
_MAX_LOCAL: Final = 64
_MAX_ADDRESS: Final = 254

# "Blank" means a control character, a space or any other Unicode white space (str.isspace);
# the compiled twin tests the same set character by character.
_BLANK = re.compile(r"[\s\x00-\x1f\x7f]")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
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


_ID_LIMIT: Final = 2**63
_MAX_BODY: Final = 1 << 20  # 1 MiB of e-mail body text
_time = time.time


def _fail_type(cls: str, field: str, value: object, expected: str) -> TypeError:
    return TypeError(f"{cls}.{field}: expected {expected}, got {type(value).__name__} {value!r}")


def _check_str(cls: str, field: str, value: object, limit: int) -> str:
    if type(value) is not str:
        raise _fail_type(cls, field, value, "str")
    if len(value) > limit:
        raise ValueError(f"{cls}.{field}: {value[:40]!r}... is {len(value)} characters, the limit is {limit}")
    return value


def _check_email(value: object) -> str:
    address = _check_str("EmailMessage", "recipient", value, _MAX_ADDRESS)
    if not address or address in _GOOD_EMAILS:  # empty: the default distribution list
        return address
    local, _, domain = address.partition("@")
    if not (
        0 < len(local) <= _MAX_LOCAL
        and domain
        and "@" not in domain
        and "." in domain
        and domain[0] != "."
        and domain[-1] != "."
        and ".." not in domain
        and _BLANK.search(address) is None
    ):
        raise ValueError(f"EmailMessage.recipient: {address!r} is not an e-mail address (name@domain.tld)")
    return _remember(_GOOD_EMAILS, address)


def _check_phone(value: object) -> str:
    number = _check_str("SMSMessage", "phone_number", value, 16)
    if not number or number in _GOOD_PHONES:
        return number
    if _E164_MATCH(number) is None:
        raise ValueError(f"SMSMessage.phone_number: {number!r} is not an E.164 number (+ and 2 to 15 digits)")
    return _remember(_GOOD_PHONES, number)


def _check_subject(value: object) -> str:
    subject = _check_str("EmailMessage", "subject", value, MAX_SUBJECT)
    if "\n" in subject or "\r" in subject:
        raise ValueError(f"EmailMessage.subject: {subject!r} contains a line break")
    return subject


def _check_priority(cls: str, value: object) -> int:
    if type(value) is not int:  # bool is an int subclass, and rejected on purpose
        raise _fail_type(cls, "priority", value, "int")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"{cls}.priority: {value!r} is outside {MIN_PRIORITY}..{MAX_PRIORITY}")
    return value


def _check_id(cls: str, value: object) -> int:
    if type(value) is not int:
        raise _fail_type(cls, "id", value, "int")
    if not 0 <= value < 2**63:
        raise ValueError(f"{cls}.id: {value!r} is outside 0..2**63-1")
    return value


def _check_time(cls: str, value: float | None) -> float:
    if value is None:
        return time.time()
    if type(value) is not float and type(value) is not int:
        raise _fail_type(cls, "created_at", value, "float")
    stamp = float(value)
    if not 0.0 <= stamp < 1e11:  # also rejects NaN and infinities
        raise ValueError(f"{cls}.created_at: {value!r} is not a Unix time in seconds")
    return stamp


@final  # as the compiled twin, a final cdef class
@dataclass(slots=True, frozen=True, init=False)
class EmailMessage:
    """An e-mail alert. Frozen, slotted, no ``__dict__``.

    Defaults: empty ``recipient`` (the dashboard's default distribution list), empty
    ``subject`` and ``body``, priority 3, ``created_at`` now, ``id`` 0 (not stored yet; the
    store's messages carry their row id).
    """

    kind: ClassVar[str] = "email"

    recipient: str
    subject: str
    body: str
    priority: int
    created_at: float
    id: int

    def __init__(
        self,
        recipient: str = "",
        subject: str = "",
        body: str = "",
        *,
        priority: int = DEFAULT_PRIORITY,
        created_at: float | None = None,
        id: int = 0,
    ) -> None:
        # Frozen: fields are written once, through the slot descriptors, which is what a
        # frozen dataclass's own __init__ does via object.__setattr__, only cheaper.
        if (  # the common case, checked inline; anything else takes the path that explains
            type(subject) is str
            and type(body) is str
            and type(priority) is int
            and MIN_PRIORITY <= priority <= MAX_PRIORITY
            and type(id) is int
            and 0 <= id < _ID_LIMIT
            and (created_at is None or (type(created_at) is float and 0.0 <= created_at < 1e11))
            and len(subject) <= MAX_SUBJECT
            and len(body) <= _MAX_BODY
            and "\n" not in subject
            and "\r" not in subject
        ):
            _set_email_recipient(self, _check_email(recipient))
            _set_email_subject(self, subject)
            _set_email_body(self, body)
            _set_email_priority(self, priority)
            _set_email_created_at(self, _time() if created_at is None else created_at)
            _set_email_id(self, id)
            return
        _set_email_recipient(self, _check_email(recipient))
        _set_email_subject(self, _check_subject(subject))
        _set_email_body(self, _check_str("EmailMessage", "body", body, _MAX_BODY))
        _set_email_priority(self, _check_priority("EmailMessage", priority))
        _set_email_created_at(self, _check_time("EmailMessage", created_at))
        _set_email_id(self, _check_id("EmailMessage", id))

    def _row(self) -> tuple[str, float, int, str, str, str]:
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("email", self.created_at, self.priority, self.recipient, self.subject, self.body)


@final
@dataclass(slots=True, frozen=True, init=False)
class SMSMessage:
    """An SMS alert. Frozen, slotted, no ``__dict__``.

    Defaults: empty ``phone_number`` (the on-call rota), empty ``body``, priority 3,
    ``created_at`` now, ``id`` 0. The body holds at most ``MAX_SMS_BODY`` characters.
    """

    kind: ClassVar[str] = "sms"

    phone_number: str
    body: str
    priority: int
    created_at: float
    id: int

    def __init__(
        self,
        phone_number: str = "",
        body: str = "",
        *,
        priority: int = DEFAULT_PRIORITY,
        created_at: float | None = None,
        id: int = 0,
    ) -> None:
        if (  # the common case, checked inline; anything else takes the path that explains
            type(phone_number) is str
            and (not phone_number or phone_number in _GOOD_PHONES)
            and type(body) is str
            and len(body) <= MAX_SMS_BODY
            and type(priority) is int
            and MIN_PRIORITY <= priority <= MAX_PRIORITY
            and type(id) is int
            and 0 <= id < _ID_LIMIT
            and (created_at is None or (type(created_at) is float and 0.0 <= created_at < 1e11))
        ):
            _set_sms_phone_number(self, phone_number)  # empty, or validated before
            _set_sms_body(self, body)
            _set_sms_priority(self, priority)
            _set_sms_created_at(self, _time() if created_at is None else created_at)
            _set_sms_id(self, id)
            return
        _set_sms_phone_number(self, _check_phone(phone_number))
        _set_sms_body(self, _check_str("SMSMessage", "body", body, MAX_SMS_BODY))
        _set_sms_priority(self, _check_priority("SMSMessage", priority))
        _set_sms_created_at(self, _check_time("SMSMessage", created_at))
        _set_sms_id(self, _check_id("SMSMessage", id))

    def _row(self) -> tuple[str, float, int, str, str, str]:
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("sms", self.created_at, self.priority, self.phone_number, "", self.body)


def _refuse_assignment(self: object, name: str, value: object = None) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


# dataclass's own frozen __setattr__ uses zero-argument super(), which breaks on the class that
# slots=True rebuilds (CPython gh-90562 on 3.12): assigning a non-field raised TypeError there.
for _cls in (EmailMessage, SMSMessage):
    type.__setattr__(_cls, "__setattr__", _refuse_assignment)
    type.__setattr__(_cls, "__delattr__", _refuse_assignment)

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
