"""EmailMessage and SMSMessage: frozen, slotted dataclasses with validated fields (both twins)."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import pickle
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe import MAX_SMS_BODY
from tests.conftest import Impl


def test_is_a_frozen_slotted_dataclass(impl: Impl) -> None:
    for cls in (impl.EmailMessage, impl.SMSMessage):
        msg: Any = cls()
        assert dataclasses.is_dataclass(cls())
        assert not hasattr(msg, "__dict__")
        with pytest.raises(AttributeError):
            msg.body = "changed"
        with pytest.raises(AttributeError):
            msg.extra = 1


def test_fields_in_order(impl: Impl) -> None:
    email = [f.name for f in dataclasses.fields(impl.EmailMessage)]
    sms = [f.name for f in dataclasses.fields(impl.SMSMessage)]
    assert email == ["recipient", "subject", "body", "priority", "created_at", "id"]
    assert sms == ["phone_number", "body", "priority", "created_at", "id"]


def test_defaults(impl: Impl) -> None:
    before = time.time()
    email = impl.EmailMessage()
    sms = impl.SMSMessage()
    after = time.time()
    assert (email.recipient, email.subject, email.body, email.priority, email.id) == ("", "", "", 3, 0)
    assert (sms.phone_number, sms.body, sms.priority, sms.id) == ("", "", 3, 0)
    for msg in (email, sms):
        assert before <= msg.created_at <= after
        assert type(msg.created_at) is float
    assert email.kind == "email"
    assert sms.kind == "sms"


def test_replace_equality_hash_repr(impl: Impl) -> None:
    msg = impl.EmailMessage("ops@example.com", "disk", "90% full", priority=4, created_at=100.0, id=7)
    copy = dataclasses.replace(msg, priority=5)
    assert copy.priority == 5
    assert copy.recipient == "ops@example.com"
    assert msg == dataclasses.replace(msg)
    assert hash(msg) == hash(dataclasses.replace(msg))
    assert msg != copy
    assert repr(msg) == (
        "EmailMessage(recipient='ops@example.com', subject='disk', body='90% full', "
        "priority=4, created_at=100.0, id=7)"
    )
    assert dataclasses.asdict(msg)["subject"] == "disk"


def test_replace_validates(impl: Impl) -> None:
    msg = impl.SMSMessage("+15551234567", "hi")
    with pytest.raises(ValueError, match=r"SMSMessage.priority: 9 is outside 1..5"):
        dataclasses.replace(msg, priority=9)


def test_pickle_round_trip(impl: Impl) -> None:
    msg = impl.SMSMessage("+15551234567", "db down", priority=5, created_at=5.0, id=3)
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_not_tracked_by_gc_when_compiled(impl: Impl) -> None:
    msg = impl.EmailMessage("a@b.co", "s", "b")
    # Only str and numbers inside: no cycle is possible. The compiled type has no tp_traverse;
    # a slotted Python dataclass is always tracked.
    assert gc.is_tracked(msg) is (impl.name == "py")


def _spelled_at_run_time(name: str) -> str:
    """``name`` as a new str object: not the interned constant a call site passes."""
    return "".join(list(name))


def test_every_call_shape_fills_the_same_fields(impl: Impl) -> None:
    # The compiled classes are called through their own vectorcall entry (see _messages_c);
    # positionals, keywords, a ** mapping and keyword names made at run time must all agree.
    want = impl.SMSMessage("+15551234567", "db down", priority=5, created_at=5.0, id=3)
    assert (
        impl.SMSMessage(phone_number="+15551234567", body="db down", priority=5, created_at=5.0, id=3) == want
    )
    assert impl.SMSMessage("+15551234567", body="db down", id=3, created_at=5.0, priority=5) == want
    fields = {_spelled_at_run_time(f.name): getattr(want, f.name) for f in dataclasses.fields(want)}
    assert impl.SMSMessage(**fields) == want
    email = impl.EmailMessage("ops@example.com", "disk", "full", priority=1, created_at=9.0, id=2**40)
    assert (email.recipient, email.subject, email.body, email.priority, email.created_at, email.id) == (
        "ops@example.com",
        "disk",
        "full",
        1,
        9.0,
        2**40,
    )
    assert impl.EmailMessage(**{_spelled_at_run_time("subject"): "s"}).subject == "s"


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("+15551234567", "b", 3), {}, "positional argument"),
        (("+15551234567",), {"phone_number": "+15551234567"}, "multiple values"),
        ((), {"colour": "red"}, "unexpected keyword argument 'colour'"),
        ((), {_spelled_at_run_time("colour"): "red"}, "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_call_shapes_are_type_errors(
    impl: Impl, args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        impl.SMSMessage(*args, **kwargs)


def test_recycled_objects_carry_only_their_own_values(impl: Impl) -> None:
    # On GIL builds the compiled classes keep a free list of dead objects to reuse; a reused
    # object must never show a field of its previous life.
    first = [
        impl.SMSMessage(f"+1555000{i:04d}", f"old {i}", priority=5, created_at=1.0, id=i) for i in range(200)
    ]
    del first
    again = [impl.SMSMessage() for _ in range(200)]
    assert all((m.phone_number, m.body, m.priority, m.id) == ("", "", 3, 0) for m in again)
    emails = [impl.EmailMessage(created_at=2.0) for _ in range(200)]
    assert all((m.recipient, m.subject, m.body, m.created_at) == ("", "", "", 2.0) for m in emails)


BAD_VALUES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "email",
        {"recipient": "no-at-sign"},
        ValueError,
        "EmailMessage.recipient: 'no-at-sign' is not an e-mail",
    ),
    ("email", {"recipient": "a@b"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "a@@b.com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "a b@c.com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "a@.b.com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "a@b.com."}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "a@b..com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "@b.com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "x" * 65 + "@b.com"}, ValueError, "is not an e-mail address"),
    ("email", {"recipient": "x@" + "b" * 260 + ".com"}, ValueError, "the limit is 254"),
    ("email", {"recipient": 42}, TypeError, "EmailMessage.recipient: expected str, got int 42"),
    (
        "email",
        {"subject": "two\nlines"},
        ValueError,
        "EmailMessage.subject: 'two\\\\nlines' contains a line break",
    ),
    ("email", {"subject": "s" * 256}, ValueError, "is 256 characters, the limit is 255"),
    ("email", {"body": None}, TypeError, "EmailMessage.body: expected str, got NoneType None"),
    ("email", {"priority": 0}, ValueError, r"EmailMessage.priority: 0 is outside 1..5"),
    ("email", {"priority": 6}, ValueError, r"EmailMessage.priority: 6 is outside 1..5"),
    ("email", {"priority": True}, TypeError, "EmailMessage.priority: expected int, got bool True"),
    ("email", {"priority": "high"}, TypeError, "EmailMessage.priority: expected int, got str 'high'"),
    ("email", {"id": -1}, ValueError, r"EmailMessage.id: -1 is outside 0..2\*\*63-1"),
    ("email", {"id": 2**63}, ValueError, "EmailMessage.id: 9223372036854775808 is outside"),
    ("email", {"created_at": "now"}, TypeError, "EmailMessage.created_at: expected float, got str 'now'"),
    ("email", {"created_at": float("nan")}, ValueError, "EmailMessage.created_at: nan is not a Unix time"),
    ("email", {"created_at": -1.0}, ValueError, "is not a Unix time"),
    ("sms", {"phone_number": "555-1234"}, ValueError, "SMSMessage.phone_number: '555-1234' is not an E.164"),
    ("sms", {"phone_number": "+0123"}, ValueError, "is not an E.164 number"),
    ("sms", {"phone_number": "+1"}, ValueError, "is not an E.164 number"),
    ("sms", {"phone_number": "+1234567890123456"}, ValueError, "the limit is 16"),
    ("sms", {"phone_number": "+1555123456\uff17"}, ValueError, "is not an E.164 number"),
    ("sms", {"phone_number": 15551234567}, TypeError, "SMSMessage.phone_number: expected str, got int"),
    ("sms", {"body": "x" * (MAX_SMS_BODY + 1)}, ValueError, "is 161 characters, the limit is 160"),
    ("sms", {"priority": 2.0}, TypeError, "SMSMessage.priority: expected int, got float 2.0"),
]


@pytest.mark.parametrize(("kind", "fields", "error", "match"), BAD_VALUES)
def test_bad_values_name_the_field_and_value(
    impl: Impl, kind: str, fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    cls = impl.EmailMessage if kind == "email" else impl.SMSMessage
    with pytest.raises(error, match=match):
        cls(**fields)


GOOD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("email", {"recipient": "ops@example.com"}),
    ("email", {"recipient": "first.last+tag@sub.example.co.uk"}),
    ("email", {"recipient": "x" * 64 + "@b.co"}),
    ("email", {"subject": "s" * 255, "body": "b" * 100_000}),
    ("email", {"priority": 1, "created_at": 0, "id": 2**63 - 1}),
    ("sms", {"phone_number": "+15551234567", "body": "x" * MAX_SMS_BODY}),
    ("sms", {"phone_number": "+12", "priority": 5}),
    ("sms", {"phone_number": "+123456789012345"}),
]


@pytest.mark.parametrize(("kind", "fields"), GOOD_VALUES)
def test_good_values_are_kept(impl: Impl, kind: str, fields: dict[str, Any]) -> None:
    cls = impl.EmailMessage if kind == "email" else impl.SMSMessage
    msg = cls(**fields)
    for name, value in fields.items():
        assert getattr(msg, name) == value


def test_a_phone_number_that_passed_is_not_thereby_an_email_address(impl: Impl) -> None:
    # The pure twin remembers values that passed validation; a number remembered as a phone
    # number once let the same string through as an e-mail recipient (found by the test below).
    assert impl.SMSMessage("+15550001111").phone_number == "+15550001111"
    with pytest.raises(ValueError, match="is not an e-mail address"):
        impl.EmailMessage("+15550001111")
    assert impl.EmailMessage("ops@example.com").recipient == "ops@example.com"
    with pytest.raises(ValueError, match=r"is not an E\.164 number"):
        impl.SMSMessage("ops@example.com")


def _outcome(cls: Any, **fields: object) -> tuple[str, str]:
    try:
        cls(**fields)
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)
    return "ok", ""


_ADDRESSISH = st.text(alphabet=st.sampled_from("ab@.+- \t\n\x00\u00a0\u2003x1é"), max_size=20)


@given(address=_ADDRESSISH, phone=_ADDRESSISH | st.from_regex(r"\+[0-9]{0,17}", fullmatch=True))
def test_twins_agree_on_every_input(address: str, phone: str) -> None:
    """The compiled validators (C loops) and the pure ones (regexes) accept the same strings."""
    from notipipe import _messages_py

    try:
        _messages_c: Any = importlib.import_module("notipipe._messages_c")
    except ImportError:
        pytest.skip("compiled twin not built")
    for field_name, py_cls, c_cls, value in (
        ("recipient", _messages_py.EmailMessage, _messages_c.EmailMessage, address),
        ("subject", _messages_py.EmailMessage, _messages_c.EmailMessage, address),
        ("phone_number", _messages_py.SMSMessage, _messages_c.SMSMessage, phone),
    ):
        assert _outcome(py_cls, **{field_name: value}) == _outcome(c_cls, **{field_name: value})
