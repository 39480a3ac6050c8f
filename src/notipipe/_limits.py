"""The limits of a message's fields and the errors that name them, written once for both twins.

``_messages_py`` (the pure twin) and ``_messages_c`` (the compiled one) import everything here:
the compiled twin copies the limits into C variables at import, so its checks compare C
integers, and calls these functions only on the way to raising. Each function returns the
exception for its caller to raise, so a traceback ends in the check that failed.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Final

__all__ = [
    "DEFAULT_PRIORITY",
    "ID_LIMIT",
    "MAX_ADDRESS",
    "MAX_BODY",
    "MAX_ID",
    "MAX_LOCAL",
    "MAX_PHONE",
    "MAX_PHONE_DIGITS",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PHONE_DIGITS",
    "MIN_PRIORITY",
    "TIME_LIMIT",
    "assignment_error",
    "deletion_error",
    "id_error",
    "id_range_error",
    "line_break_error",
    "new_error",
    "not_a_number_error",
    "not_a_time_error",
    "not_an_address_error",
    "priority_error",
    "reinit_error",
    "shown",
    "surrogate_error",
    "too_long_error",
    "type_error",
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
MAX_LOCAL: Final = 64
MAX_ADDRESS: Final = 254
#: E.164: a "+", then a country code that does not start with 0 and the rest, 2 to 15 digits.
MIN_PHONE_DIGITS: Final = 2
MAX_PHONE_DIGITS: Final = 15
MAX_PHONE: Final = 1 + MAX_PHONE_DIGITS
#: 1 MiB of e-mail body text.
MAX_BODY: Final = 1 << 20
#: ids are SQLite's (and PostgreSQL's bigint) non-negative integers: 0 up to 2**63 - 1.
ID_LIMIT: Final = 2**63
#: The highest id an alert can be stored under (in every backend).
MAX_ID: Final = ID_LIMIT - 1
#: created_at is Unix seconds below this (the year 5138): a value in milliseconds is refused.
TIME_LIMIT: Final = 10**11

# Text quoted in an error is cut to this many characters.
_QUOTED = 40


def shown(value: object) -> str:
    """``repr(value)`` for an error message; a huge int as its size (its digits could exceed
    the interpreter's int-to-str limit, and the error would then be about that instead)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<{type(value).__name__} of {value.bit_length()} bits>"
    return repr(value)


def type_error(cls: str, field: str, value: object, expected: str) -> TypeError:
    return TypeError(f"{cls}.{field}: expected {expected}, got {type(value).__name__} {shown(value)}")


def too_long_error(cls: str, field: str, text: str, limit: int) -> ValueError:
    return ValueError(f"{cls}.{field}: {text[:_QUOTED]!r}... is {len(text)} characters, the limit is {limit}")


def surrogate_error(cls: str, field: str, text: str, index: int) -> ValueError:
    """A str holding a surrogate code point: UTF-8 cannot encode it, so the store could not
    write it; refused when the message is made, where the error can name the field."""
    clipped = f"{text[:_QUOTED]!r}{'...' if len(text) > _QUOTED else ''}"
    return ValueError(
        f"{cls}.{field}: {clipped} contains the surrogate {text[index]!r} at index {index}, "
        "which UTF-8 cannot encode"
    )


def not_an_address_error(address: str) -> ValueError:
    return ValueError(f"EmailMessage.recipient: {address!r} is not an e-mail address (name@domain.tld)")


def not_a_number_error(number: str) -> ValueError:
    return ValueError(
        f"SMSMessage.phone_number: {number!r} is not an E.164 number "
        f"(+ and {MIN_PHONE_DIGITS} to {MAX_PHONE_DIGITS} digits)"
    )


def line_break_error(subject: str) -> ValueError:
    return ValueError(f"EmailMessage.subject: {subject!r} contains a line break")


def priority_error(cls: str, value: int) -> ValueError:
    return ValueError(f"{cls}.priority: {shown(value)} is outside {MIN_PRIORITY}..{MAX_PRIORITY}")


def id_error(cls: str, value: int) -> ValueError:
    return ValueError(f"{cls}.id: {shown(value)} is outside 0..2**63-1")  # ID_LIMIT - 1


def id_range_error(name: str, value: int) -> ValueError:
    """An id or a count past what a store holds (``DatabaseConnection.after``, ``last``, ...)."""
    return ValueError(f"{name} must be in 0..2**63-1 (the ids a store holds), got {shown(value)}")


def not_a_time_error(cls: str, value: float) -> ValueError:
    return ValueError(f"{cls}.created_at: {shown(value)} is not a Unix time in seconds")


def reinit_error(cls: str) -> FrozenInstanceError:
    return FrozenInstanceError(f"cannot re-initialise a frozen {cls}: build a new one with {cls}(...)")


def new_error(cls: str) -> TypeError:
    return TypeError(f"{cls}.__new__() would make a message with no fields: build one with {cls}(...)")


def assignment_error(name: str) -> FrozenInstanceError:
    return FrozenInstanceError(f"cannot assign to field {name!r}")


def deletion_error(name: str) -> FrozenInstanceError:
    return FrozenInstanceError(f"cannot delete field {name!r}")
