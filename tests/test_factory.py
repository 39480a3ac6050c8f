"""MessageFactory: kinds by name, generic creation, registration of new kinds."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import notipipe
from notipipe import MessageFactory
from tests.conftest import Impl, outcome

pytestmark = pytest.mark.twin


def test_create_each_kind(impl: Impl) -> None:
    email = impl.MessageFactory.create_message("email", recipient="ops@example.com", subject="cpu")
    sms = impl.MessageFactory.create_message("sms", phone_number="+4915112345678", body="cpu 99%", priority=5)
    assert type(email) is impl.EmailMessage
    assert (email.recipient, email.subject) == ("ops@example.com", "cpu")
    assert type(sms) is impl.SMSMessage
    assert (sms.phone_number, sms.body, sms.priority) == ("+4915112345678", "cpu 99%", 5)


def test_no_arguments_gives_documented_defaults(impl: Impl) -> None:
    msg = impl.MessageFactory.create_message("email")
    assert (msg.recipient, msg.subject, msg.body, msg.priority, msg.id) == ("", "", "", 3, 0)


def test_unknown_type_lists_known_ones(impl: Impl) -> None:
    with pytest.raises(ValueError, match=r"unknown message type 'fax'; known types: 'email', 'sms'"):
        impl.MessageFactory.create_message("fax")
    with pytest.raises(ValueError, match=r"unknown message type \['email'\]"):
        impl.MessageFactory.create_message(["email"])  # type: ignore[call-overload]


def test_bad_field_names_and_values_are_errors(impl: Impl) -> None:
    with pytest.raises(TypeError, match="phone_number"):
        impl.MessageFactory.create_message("email", phone_number="+15551234567")
    with pytest.raises(ValueError, match=r"SMSMessage\.phone_number"):
        impl.MessageFactory.create_message("sms", phone_number="call me")


def test_positional_misuse_and_run_time_keywords(impl: Impl) -> None:
    create: Any = impl.MessageFactory.create_message
    with pytest.raises(TypeError, match="positional argument"):
        create("sms", "+15551234567")
    with pytest.raises(TypeError, match="positional argument"):
        create()
    name = "".join(["phone_", "number"])  # a keyword name that is not an interned constant
    assert create("sms", **{name: "+15551234567"}).phone_number == "+15551234567"
    with pytest.raises(TypeError, match="recipient"):
        create("sms", recipient="ops@example.com")


def test_generic_create(impl: Impl) -> None:
    msg = impl.MessageFactory.create(impl.SMSMessage, body="up again")
    assert type(msg) is impl.SMSMessage
    assert msg.body == "up again"
    with pytest.raises(ValueError, match=r"is not a registered message class"):
        impl.MessageFactory.create(int)  # type: ignore[type-var]


def test_register_a_new_kind_without_touching_the_parent() -> None:
    class Factory(MessageFactory):
        pass

    # A name is the store's, one class each, process-wide: each copy of the test (several run at
    # once in the parallel leg) registers its own class under a name of its own.
    name = f"push_{uuid.uuid4().hex[:12]}"

    @Factory.register(name)
    @dataclass(slots=True, frozen=True)
    class PushMessage:
        kind: ClassVar[str] = name
        device: str = ""
        title: str = ""
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    push = Factory.create_message(name, device="pixel-7", title="disk full")
    assert isinstance(push, PushMessage)
    assert Factory.create(PushMessage, device="x").device == "x"
    assert Factory.kinds() == ("email", name, "sms")
    assert MessageFactory.kinds() == ("email", "sms")  # the parent is untouched
    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
        Factory.register(name)(PushMessage)
    assert Factory.register(name, replace=True)(PushMessage) is PushMessage
    with pytest.raises(ValueError, match="non-empty str"):
        Factory.register("")
    with pytest.raises(TypeError, match="42 cannot be registered as a message kind: it is not a class"):
        Factory.register("bad")(42)  # type: ignore[type-var]
    # A callable that is not a frozen slotted dataclass cannot be stored: refused at once.
    with pytest.raises(TypeError, match="it is not a class"):
        Factory.register("bad")(functools.partial(PushMessage, device="x"))  # type: ignore[type-var]
    with pytest.raises(
        TypeError, match="PushLike cannot be registered as a message kind: it is not a dataclass"
    ):

        @Factory.register("bad")
        class PushLike:  # type: ignore[type-var]
            kind: ClassVar[str] = "bad"

    assert Factory.kinds() == ("email", name, "sms")


def test_public_factory_builds_the_selected_twin() -> None:
    assert type(notipipe.MessageFactory.create_message("email")) is notipipe.EmailMessage


BAD_FIELDS: list[tuple[str, dict[str, object]]] = [
    ("sms", {"body": "db \ud800down"}),
    ("email", {"subject": "\udfff"}),
    ("sms", {"created_at": 10**400}),
    ("email", {"priority": 10**5000}),
    ("sms", {"colour": "red"}),
    ("email", {"".join(["col", "our"]): "red"}),  # a keyword name made at run time
    ("sms", {"kind": "sms"}),
]


@pytest.mark.parametrize(("kind", "fields"), BAD_FIELDS)
def test_the_factory_raises_the_class_own_errors(impl: Impl, kind: str, fields: dict[str, object]) -> None:
    cls = impl.EmailMessage if kind == "email" else impl.SMSMessage
    expected = outcome(cls, **fields)
    assert expected[0] != "ok"
    assert expected[1].startswith(cls.__name__)  # the field, or the class for a binding error
    assert outcome(lambda **f: impl.MessageFactory.create_message(kind, **f), **fields) == expected
    assert outcome(lambda **f: impl.MessageFactory.create(cls, **f), **fields) == expected
