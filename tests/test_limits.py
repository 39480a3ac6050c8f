"""Both twins enforce the limits of ``notipipe._limits``, at the limit and one past it, with its
messages: the limits are written once, and neither twin keeps a copy of its own.

Each case builds a message at the limit (accepted) and one step past it (refused with exactly the
error ``_limits`` builds), on the compiled and on the pure classes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import notipipe
from notipipe import _limits as limits
from tests.conftest import Impl

pytestmark = pytest.mark.twin

_DOMAIN = ".example.com"


def _address(length: int) -> str:
    """An e-mail address of ``length`` characters with the longest local part allowed."""
    return "a" * limits.MAX_LOCAL + "@" + "b" * (length - limits.MAX_LOCAL - 1 - len(_DOMAIN)) + _DOMAIN


def _phone(digits: int) -> str:
    return "+1" + "2" * (digits - 1)


# (class, fields at the limit, fields one past it, the error _limits builds for the latter)
type Case = tuple[str, dict[str, Any], dict[str, Any], Callable[[], Exception]]

CASES: dict[str, Case] = {
    "subject": (
        "EmailMessage",
        {"subject": "s" * limits.MAX_SUBJECT},
        {"subject": "s" * (limits.MAX_SUBJECT + 1)},
        lambda: limits.too_long_error(
            "EmailMessage", "subject", "s" * (limits.MAX_SUBJECT + 1), limits.MAX_SUBJECT
        ),
    ),
    "email body": (
        "EmailMessage",
        {"body": "b" * limits.MAX_BODY},
        {"body": "b" * (limits.MAX_BODY + 1)},
        lambda: limits.too_long_error("EmailMessage", "body", "b" * (limits.MAX_BODY + 1), limits.MAX_BODY),
    ),
    "sms body": (
        "SMSMessage",
        {"body": "b" * limits.MAX_SMS_BODY},
        {"body": "b" * (limits.MAX_SMS_BODY + 1)},
        lambda: limits.too_long_error(
            "SMSMessage", "body", "b" * (limits.MAX_SMS_BODY + 1), limits.MAX_SMS_BODY
        ),
    ),
    "address": (
        "EmailMessage",
        {"recipient": _address(limits.MAX_ADDRESS)},
        {"recipient": _address(limits.MAX_ADDRESS + 1)},
        lambda: limits.too_long_error(
            "EmailMessage", "recipient", _address(limits.MAX_ADDRESS + 1), limits.MAX_ADDRESS
        ),
    ),
    "local part": (
        "EmailMessage",
        {"recipient": "a" * limits.MAX_LOCAL + "@example.com"},
        {"recipient": "a" * (limits.MAX_LOCAL + 1) + "@example.com"},
        lambda: limits.not_an_address_error("a" * (limits.MAX_LOCAL + 1) + "@example.com"),
    ),
    "most digits": (
        "SMSMessage",
        {"phone_number": _phone(limits.MAX_PHONE_DIGITS)},
        {"phone_number": _phone(limits.MAX_PHONE_DIGITS + 1)},
        lambda: limits.too_long_error(
            "SMSMessage", "phone_number", _phone(limits.MAX_PHONE_DIGITS + 1), limits.MAX_PHONE
        ),
    ),
    "fewest digits": (
        "SMSMessage",
        {"phone_number": _phone(limits.MIN_PHONE_DIGITS)},
        {"phone_number": _phone(limits.MIN_PHONE_DIGITS - 1)},
        lambda: limits.not_a_number_error(_phone(limits.MIN_PHONE_DIGITS - 1)),
    ),
    "highest priority": (
        "SMSMessage",
        {"priority": limits.MAX_PRIORITY},
        {"priority": limits.MAX_PRIORITY + 1},
        lambda: limits.priority_error("SMSMessage", limits.MAX_PRIORITY + 1),
    ),
    "lowest priority": (
        "EmailMessage",
        {"priority": limits.MIN_PRIORITY},
        {"priority": limits.MIN_PRIORITY - 1},
        lambda: limits.priority_error("EmailMessage", limits.MIN_PRIORITY - 1),
    ),
    "largest id": (
        "EmailMessage",
        {"id": limits.ID_LIMIT - 1},
        {"id": limits.ID_LIMIT},
        lambda: limits.id_error("EmailMessage", limits.ID_LIMIT),
    ),
    "latest time (int)": (
        "SMSMessage",
        {"created_at": limits.TIME_LIMIT - 1},
        {"created_at": limits.TIME_LIMIT},
        lambda: limits.not_a_time_error("SMSMessage", limits.TIME_LIMIT),
    ),
    "latest time (float)": (
        "EmailMessage",
        {"created_at": limits.TIME_LIMIT - 0.5},
        {"created_at": float(limits.TIME_LIMIT)},
        lambda: limits.not_a_time_error("EmailMessage", float(limits.TIME_LIMIT)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_limit_is_enforced_where_limits_puts_it(impl: Impl, case: str) -> None:
    cls_name, at_limit, past_limit, expected = CASES[case]
    cls = getattr(impl, cls_name)
    message = cls(**at_limit)
    for name, value in at_limit.items():
        assert getattr(message, name) == value
    error = expected()
    with pytest.raises(type(error)) as raised:
        cls(**past_limit)
    assert str(raised.value) == str(error)


def test_the_defaults_and_exports_are_the_limits(impl: Impl) -> None:
    assert impl.EmailMessage().priority == limits.DEFAULT_PRIORITY
    assert impl.SMSMessage().priority == limits.DEFAULT_PRIORITY
    for name in ("MIN_PRIORITY", "MAX_PRIORITY", "DEFAULT_PRIORITY", "MAX_SMS_BODY", "MAX_SUBJECT"):
        assert getattr(impl.messages_module, name) is getattr(limits, name), name
        assert getattr(notipipe, name) is getattr(limits, name), name


# -- one-line fields, the sign of zero (issue 20, item 18) ----------------------------------------

#: Every code point ``str.splitlines()`` splits at: the line breaks a one-line field refuses.
LINE_BREAKS = [
    chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and len(f"a{chr(c)}b".splitlines()) > 1
]
_BREAK_IDS = [f"U+{ord(b):04X}" for b in LINE_BREAKS]


def _refused(make: Callable[[], object], expected: Exception) -> None:
    """``make()`` raises exactly ``expected`` (its type and its message)."""
    with pytest.raises(type(expected), match=f"^{re.escape(str(expected))}$"):
        make()


def test_the_line_breaks_are_those_splitlines_knows() -> None:
    # The set the tests below refuse, spelled out: a change of Python's would show here first.
    assert LINE_BREAKS == ["\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("where", ["a{}b", "{}", "end{}", "{}start", "é{}\U0001f525", "tab\t{}"])
@pytest.mark.parametrize("brk", LINE_BREAKS, ids=_BREAK_IDS)
def test_a_subject_refuses_every_line_break(impl: Impl, brk: str, where: str) -> None:
    subject = where.format(brk)
    _refused(lambda: impl.EmailMessage("ops@example.com", subject), limits.line_break_error(subject))


@pytest.mark.parametrize("brk", LINE_BREAKS, ids=_BREAK_IDS)
def test_the_other_one_line_fields_refuse_every_line_break(impl: Impl, brk: str) -> None:
    for address in (f"op{brk}s@example.com", f"ops@exa{brk}mple.com", f"ops@example.com{brk}"):
        _refused(lambda: impl.EmailMessage(address), limits.not_an_address_error(address))  # noqa: B023
    for number in (f"+1555{brk}1234", f"+15551234{brk}"):
        _refused(lambda: impl.SMSMessage(number), limits.not_a_number_error(number))  # noqa: B023


def test_only_line_breaks_are_refused_in_a_subject(impl: Impl) -> None:
    # Each code point a subject may hold (not a surrogate, not a line break) is kept: the check
    # is exactly splitlines' set, in both twins (the compiled one tests the set character by
    # character).
    refused = set(LINE_BREAKS)
    kept = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c) not in refused]
    for start in range(0, len(kept), 200):
        subject = "".join(kept[start : start + 200])
        assert impl.EmailMessage(subject=subject).subject == subject


@pytest.mark.parametrize("cls_name", ["EmailMessage", "SMSMessage"])
def test_created_at_refuses_negative_zero_and_keeps_zero(impl: Impl, cls_name: str) -> None:
    cls = getattr(impl, cls_name)
    _refused(lambda: cls(created_at=-0.0), limits.not_a_time_error(cls_name, -0.0))
    for zero in (0.0, 0):
        kept = cls(created_at=zero).created_at
        assert (kept, str(kept)) == (0.0, "0.0")
