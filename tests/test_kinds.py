"""Registered kinds (issue 22): declared as frozen slotted dataclasses, checked at ``register``,
each value checked at creation by the generated constructor, stored as a versioned JSON object of
the kind's own fields; a stored row of a kind not registered, or of a kind whose fields changed,
read back as a ``StoredAlert`` (the storage round trips: ``test_kinds_storage``)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import gc
import importlib
import inspect
import itertools
import json
import logging
import math
import pickle
import threading
import time
import traceback
from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe import BaseMessage, MessageFactory, StoredAlert, fields_of
from notipipe._kinds import read_row as _read_row
from notipipe._kinds import spec_of
from tests.conftest import Impl, outcome

pytestmark = pytest.mark.twin


class _Factory(MessageFactory):
    """The tests' own factory: the package's MessageFactory keeps its built-in kinds only."""


@pytest.fixture
def factory(impl: Impl) -> type[MessageFactory]:
    """A factory of the test's own over the twin's (whose kinds the other tests count)."""
    return type("Factory", (impl.MessageFactory,), {})


_names = itertools.count()


def _name(stem: str = "push") -> str:
    """A kind name of the test's own: names are the store's, one class each, process-wide."""
    return f"{stem}_{next(_names)}"


def _push_class() -> Any:
    """The issue's PushMessage, declaring the common fields itself; a new class each call."""

    @dataclass(frozen=True, slots=True)
    class PushMessage:
        device: str = ""
        title: str = ""
        badge: int = 0
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    return PushMessage


def _page_class() -> Any:
    """A kind on BaseMessage: a positional field without a default, optional fields."""

    @dataclass(frozen=True, slots=True)
    class PageMessage(BaseMessage):
        who: str
        level: float | None = None
        ack: bool = False
        retries: Optional[int] = None  # noqa: UP045 - the Optional spelling is accepted too

    return PageMessage


# -- declaring and registering --------------------------------------------------------------------


def test_a_registered_kind_is_built_by_its_class_and_both_factories(impl: Impl, factory: Any) -> None:
    name = _name()
    push = _push_class()
    before = inspect.signature(push)
    assert factory.register(name)(push) is push
    assert _Factory.register(name)(push) is push  # the same class on another factory
    assert push.kind == name
    assert inspect.signature(push) == before  # the generated constructor takes what the dataclass took
    made = [
        push("pixel-7", "disk full", 3, priority=5, created_at=1000.0),
        factory.create(push, device="pixel-7", title="disk full", badge=3, priority=5, created_at=1000.0),
        factory.create_message(
            name, device="pixel-7", title="disk full", badge=3, priority=5, created_at=1000.0
        ),
    ]
    for message in made:
        assert type(message) is push
        assert (message.device, message.title, message.badge, message.priority, message.id) == (
            "pixel-7",
            "disk full",
            3,
            5,
            0,
        )
        assert message.created_at == 1000.0
    assert made[0] == made[1] == made[2]
    assert fields_of(made[0]) == {"device": "pixel-7", "title": "disk full", "badge": 3}


def test_base_message_holds_the_common_fields_keyword_only(impl: Impl, factory: Any) -> None:
    page = _page_class()
    before = inspect.signature(page)
    factory.register(_name("page"))(page)
    assert inspect.signature(page) == before
    parameters = inspect.signature(page).parameters.values()
    assert [(p.name, p.kind.name, p.default) for p in parameters] == [
        ("who", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("level", "POSITIONAL_OR_KEYWORD", None),
        ("ack", "POSITIONAL_OR_KEYWORD", False),
        ("retries", "POSITIONAL_OR_KEYWORD", None),
        ("priority", "KEYWORD_ONLY", 3),
        ("created_at", "KEYWORD_ONLY", 0.0),
        ("id", "KEYWORD_ONLY", 0),
    ]
    start = time.time()
    message = page("bob", 2, retries=None)
    assert (message.who, message.level, message.ack, message.retries) == ("bob", 2.0, False, None)
    assert type(message.level) is float  # an int is taken for a float, and kept as a float
    assert (message.priority, message.id) == (3, 0)
    assert start <= message.created_at <= time.time()  # the default is "now"
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'who'"):
        page()
    assert fields_of(message) == {"who": "bob", "level": 2.0, "ack": False, "retries": None}


def test_messages_are_frozen_slotted_and_copy_like_dataclasses(impl: Impl, factory: Any) -> None:
    push = _push_class()
    factory.register(_name())(push)
    message = push("pixel-7", badge=2, created_at=5.0)
    assert not hasattr(message, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.badge = 3
    assert dataclasses.replace(message, badge=4).badge == 4
    with pytest.raises(TypeError, match=r"\.badge: expected int, got str"):
        dataclasses.replace(message, badge="4")  # replace builds through the checks
    assert copy.copy(message) == message
    every = _Every("é", 3, maybe_flag=True)
    assert pickle.loads(pickle.dumps(every)) == every


def test_kind_is_set_from_the_name_or_must_agree_with_it(impl: Impl, factory: Any) -> None:
    name = _name()

    @dataclass(frozen=True, slots=True)
    class Declared(BaseMessage):
        kind: ClassVar[str] = "something else"

    with pytest.raises(
        ValueError, match=rf"Declared.kind is 'something else': it cannot be registered as '{name}'"
    ):
        factory.register(name)(Declared)
    push = _push_class()
    factory.register(name)(push)
    with pytest.raises(
        ValueError, match=rf"is registered as the kind '{name}'; it cannot be 'other_\d+' too"
    ):
        factory.register(_name("other"))(push)


def test_a_name_is_one_class_in_the_store(impl: Impl, factory: Any) -> None:
    name = _name()
    first, second = _push_class(), _push_class()
    factory.register(name)(first)

    class Other(MessageFactory):
        pass

    # Another factory may not register a second class under the name: rows are read by name.
    with pytest.raises(
        ValueError, match=rf"message type '{name}' is already stored as .*PushMessage: pass replace=True"
    ):
        Other.register(name)(second)
    assert Other.register(name, replace=True)(second) is second
    assert spec_of(name) is not None
    assert spec_of(name).cls is second  # type: ignore[union-attr]


def test_built_in_names_need_replace_and_are_never_read_as_another_class(impl: Impl) -> None:
    class Factory(MessageFactory):
        pass

    push = _push_class()
    with pytest.raises(ValueError, match="'email' is already registered"):
        Factory.register("email")(push)
    Factory.register("email", replace=True)(push)
    assert type(Factory.create_message("email", device="x")) is push
    assert spec_of("email") is None  # e-mail rows stay EmailMessage rows
    # The built-in classes go back under their own names as they are.
    assert Factory.register("email", replace=True)(impl.EmailMessage) is impl.EmailMessage


@dataclass
class _Nested:
    x: int = 0


_REFUSED_TYPES: list[tuple[object, str]] = [
    (list[str], r"list\[str\]"),
    (dict[str, int], r"dict\[str, int\]"),
    (bytes, "bytes"),
    (datetime.datetime, "datetime"),
    (_Nested, "_Nested"),
    (Any, "Any"),
    (int | str, "int | str"),
    (list[int] | None, r"list\[int\] \| None"),
    (complex, "complex"),
    (object, "object"),
]


@pytest.mark.parametrize(("annotation", "shown"), _REFUSED_TYPES)
def test_a_field_the_store_cannot_keep_is_refused_at_register(
    impl: Impl, factory: Any, annotation: object, shown: str
) -> None:
    cls = dataclasses.make_dataclass(
        "Odd",
        [
            ("payload", annotation, field(default=None)),
            ("priority", int, 3),
            ("created_at", float, 0.0),
            ("id", int, 0),
        ],
        frozen=True,
        slots=True,
    )
    with pytest.raises(
        TypeError, match=rf"^Odd\.payload: {shown} cannot be stored; a field holds str, int, float"
    ):
        factory.register(_name("odd"))(cls)
    assert (
        "notipipe generated" not in vars(cls)["__init__"].__code__.co_filename
    )  # nothing was generated for it


def test_string_annotations_are_resolved(impl: Impl, factory: Any) -> None:
    # This module has `from __future__ import annotations`: every annotation here is a string.
    @dataclass(frozen=True, slots=True)
    class Texts(BaseMessage):
        a: str = ""
        b: int | None = None

    factory.register(_name("texts"))(Texts)
    assert Texts(b=3).b == 3
    with pytest.raises(TypeError, match=r"Texts\.b: expected int or None, got str '3'"):
        Texts(b="3")  # type: ignore[arg-type]


def test_a_class_that_is_no_frozen_slotted_dataclass_with_the_common_fields_is_refused(
    impl: Impl, factory: Any
) -> None:
    @dataclass(slots=True)
    class Thawed:
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    @dataclass(frozen=True)
    class Unslotted:
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    @dataclass(frozen=True, slots=True)
    class NoId:
        priority: int = 3
        created_at: float = 0.0

    @dataclass(frozen=True, slots=True)
    class TextPriority:
        priority: str = ""
        created_at: float = 0.0
        id: int = 0

    @dataclass(frozen=True, slots=True)
    class WithInitVar(BaseMessage):
        secret: InitVar[str] = ""

    @dataclass(frozen=True, slots=True)
    class NotInit(BaseMessage):
        derived: str = field(default="", init=False)

    refused: list[tuple[Any, type[Exception], str]] = [
        (Thawed, TypeError, "^Thawed cannot be registered as a message kind: it is not frozen"),
        (
            Unslotted,
            TypeError,
            "^Unslotted cannot be registered as a message kind: its instances have a __dict__",
        ),
        (NoId, TypeError, "^NoId has no 'id' field: every kind has priority, created_at and id"),
        (TextPriority, TypeError, "^TextPriority.priority: declared str; the common field 'priority' is int"),
        (WithInitVar, TypeError, "^WithInitVar.secret: an InitVar is not stored"),
        (NotInit, TypeError, "^NotInit.derived: a field with init=False cannot be read back"),
        (len, TypeError, "it is not a class"),
        (int, TypeError, "^int cannot be registered as a message kind: it is not a dataclass"),
    ]
    for cls, error, says in refused:
        with pytest.raises(error, match=says):
            factory.register(_name("bad"))(cls)
    assert all(not k.startswith("bad_") for k in factory.kinds())


# -- creation ---------------------------------------------------------------------------------------


def _bad_values(builtin: str, kind: str) -> list[tuple[dict[str, object], str, str]]:
    """(fields, error type, message) of values refused at creation; the common fields' errors
    word as the built-ins' (``builtin``'s), with the class's name."""
    return [
        ({"device": 7}, "TypeError", f"{kind}.device: expected str, got int 7"),
        (
            {"device": "a\ud800"},
            "ValueError",
            f"{kind}.device: 'a\\ud800' contains the surrogate '\\ud800' at index 1",
        ),
        ({"badge": True}, "TypeError", f"{kind}.badge: expected int, got bool True"),
        ({"badge": 1.0}, "TypeError", f"{kind}.badge: expected int, got float 1.0"),
        ({"badge": 2**63}, "ValueError", f"{kind}.badge: 9223372036854775808 is outside -2**63..2**63-1"),
        ({"badge": -(2**63) - 1}, "ValueError", f"{kind}.badge: -9223372036854775809 is outside"),
        ({"volume": math.nan}, "ValueError", f"{kind}.volume: nan cannot be stored (a float must be finite)"),
        ({"volume": -math.inf}, "ValueError", f"{kind}.volume: -inf cannot be stored"),
        ({"volume": 10**400}, "ValueError", f"{kind}.volume: <int of 1329 bits> is beyond the float range"),
        ({"volume": "1"}, "TypeError", f"{kind}.volume: expected float, got str '1'"),
        ({"muted": 1}, "TypeError", f"{kind}.muted: expected bool or None, got int 1"),
        ({"priority": 9}, "ValueError", f"{builtin}.priority: 9 is outside 1..5"),
        ({"priority": True}, "TypeError", f"{builtin}.priority: expected int, got bool True"),
        ({"id": -1}, "ValueError", f"{builtin}.id: -1 is outside 0..2**63-1"),
        ({"id": "1"}, "TypeError", f"{builtin}.id: expected int, got str '1'"),
        ({"created_at": -1.0}, "ValueError", f"{builtin}.created_at: -1.0 is not a Unix time in seconds"),
        ({"created_at": 1e12}, "ValueError", f"{builtin}.created_at: 1000000000000.0 is not a Unix time"),
        ({"created_at": math.nan}, "ValueError", f"{builtin}.created_at: nan is not a Unix time"),
        ({"created_at": "now"}, "TypeError", f"{builtin}.created_at: expected float, got str 'now'"),
        ({"colour": "red"}, "TypeError", "got an unexpected keyword argument 'colour'"),
    ]


def _alarm_class() -> Any:
    @dataclass(frozen=True, slots=True)
    class Alarm(BaseMessage):
        device: str = ""
        badge: int = 0
        volume: float = 0.5
        muted: bool | None = None

    return Alarm


def test_bad_values_are_refused_at_creation_naming_the_field(impl: Impl, factory: Any) -> None:
    alarm = _alarm_class()
    name = _name("alarm")
    factory.register(name)(alarm)
    for fields, error, says in _bad_values("SMSMessage", "Alarm"):
        builtin = {k: v for k, v in fields.items() if k in ("priority", "id", "created_at")}
        if builtin:  # the built-in twin says the same of the common fields
            said = outcome(impl.SMSMessage, **builtin)
            assert said[0] == error, (fields, said)
            assert said[1].startswith(says), (fields, said)
        ours = says.replace("SMSMessage.", "Alarm.")
        for make in (alarm, lambda **f: factory.create_message(name, **f)):
            got = outcome(make, **fields)
            assert got[0] == error, (fields, got)
            assert ours in got[1], (fields, got)
            assert got[1].startswith(ours) or "colour" in fields, (fields, got)  # a binding error: Python's


def test_the_common_case_and_the_explaining_path_agree(impl: Impl, factory: Any) -> None:
    alarm = _alarm_class()
    factory.register(_name("alarm"))(alarm)
    start = time.time()
    # Values outside the inline test that are still good take the explaining path: same result.
    slow = alarm("dev", 3, 2, False, priority=5, created_at=1000, id=9)
    fast = alarm("dev", 3, 2.0, False, priority=5, created_at=1000.0, id=9)
    assert slow == fast
    assert type(slow.created_at) is float
    assert type(slow.volume) is float
    for now in (None, 0.0):  # created_at None, or the declared default 0.0: now
        assert start <= alarm(created_at=now).created_at <= time.time()
    assert alarm(created_at=0).created_at == 0.0  # an int 0 is a time, as for the built-ins
    assert alarm(device="é\x00", muted=None).device == "é\x00"


def test_the_generated_code_shows_in_tracebacks(impl: Impl, factory: Any) -> None:
    alarm = _alarm_class()
    factory.register(_name("alarm"))(alarm)
    try:
        alarm(badge="x")
    except TypeError as error:
        text = "".join(traceback.format_exception(error))
    assert 'File "<notipipe generated __init__ of Alarm>", line' in text
    assert "_s_badge(self, _check(_C, _t_badge, badge))" in text  # the line itself, from linecache
    assert "def __init__(self, device=_d_device" in inspect.getsource(vars(alarm)["__init__"])
    assert "def _row(self)" in inspect.getsource(alarm._row)


# -- the stored encoding ------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ['"', "\\", '\\"', "\x00\x1f\x7f", "é\u2028\u2029", "😀", "{}", "a\nb\r\tc"]
)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_float = st.floats(allow_nan=False, allow_infinity=False)


@dataclass(frozen=True, slots=True)
class _Every(BaseMessage):
    text: str = ""
    number: int = 0
    real: float = 0.0
    flag: bool = False
    maybe_text: str | None = None
    maybe_number: int | None = None
    maybe_real: float | None = None
    maybe_flag: bool | None = None


_Factory.register("every_field_type")(_Every)


@given(
    text=_text,
    number=_int64,
    real=_float,
    flag=st.booleans(),
    maybe_text=st.none() | _text,
    maybe_number=st.none() | _int64,
    maybe_real=st.none() | _float,
    maybe_flag=st.none() | st.booleans(),
)
def test_the_row_is_the_json_of_the_fields(**values: Any) -> None:
    message = _Every(**values, priority=2, created_at=1234.5)
    kind, created_at, priority, address, subject, body = message._row()  # type: ignore[attr-defined]
    assert (kind, created_at, priority, address, subject) == ("every_field_type", 1234.5, 2, "", "")
    assert body == json.dumps({"v": 1, "fields": values})  # the same text, written directly
    decoded = json.loads(body)
    assert decoded == {"v": 1, "fields": values}
    assert all(type(decoded["fields"][k]) is type(v) for k, v in values.items())
    assert body.isascii()


def test_a_kind_with_no_fields_of_its_own() -> None:
    @_Factory.register(_name("bare"))
    @dataclass(frozen=True, slots=True)
    class Bare(BaseMessage):
        pass

    assert Bare(created_at=1.0)._row()[5] == '{"v": 1, "fields": {}}'  # type: ignore[attr-defined]


# -- reading rows without a store (the store's own round trips: test_kinds_storage) ------------------


def read_row(row: tuple[object, ...]) -> Any:
    """``_kinds.read_row``, its alert typed for the tests' attribute reads."""
    return _read_row(row)


def _row(kind: str, body: str, row_id: int = 17, address: str = "", subject: str = "") -> tuple[object, ...]:
    return (row_id, kind, 1000.0, 4, address, subject, body)


def test_a_row_of_a_kind_not_registered_is_a_stored_alert() -> None:
    encoded = json.dumps({"v": 1, "fields": {"device": "x", "n": 2}})
    alert = read_row(_row("never_registered", encoded))
    assert alert == StoredAlert(
        "never_registered", {"device": "x", "n": 2}, priority=4, created_at=1000.0, id=17
    )
    raw = read_row(_row("never_registered", "plain text", address="ops", subject="s"))
    assert raw == StoredAlert(
        "never_registered",
        {"address": "ops", "subject": "s", "body": "plain text"},
        priority=4,
        created_at=1000.0,
        id=17,
    )


def test_a_changed_kind_reads_old_rows(impl: Impl, factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    name = _name("changed")

    @dataclass(frozen=True, slots=True)
    class V2(BaseMessage):
        device: str = ""
        sound: str = "ping"  # new, with a default

    @dataclass(frozen=True, slots=True)
    class V3(BaseMessage):
        device: str = ""
        channel: str = field(default_factory=str)  # new, a factory's default
        owner: str = field(kw_only=True)  # new, without a default

    old = json.dumps({"v": 1, "fields": {"device": "pixel", "gone": 1}})
    factory.register(name)(V2)
    assert read_row(_row(name, old)) == V2("pixel", "ping", priority=4, created_at=1000.0, id=17)
    factory.register(name, replace=True)(V3)
    with caplog.at_level(logging.WARNING, "notipipe"):
        for row_id in (17, 18):
            alert = read_row(_row(name, old, row_id))
            assert alert == StoredAlert(
                name, {"device": "pixel", "gone": 1}, priority=4, created_at=1000.0, id=row_id
            )
        assert (
            read_row(_row(name, json.dumps({"v": 2, "fields": {}}), 19)).fields["body"]
            == '{"v": 2, "fields": {}}'
        )
        assert (
            read_row(_row(name, json.dumps({"v": 1, "fields": {"device": 5, "owner": "x"}}), 20)).kind == name
        )
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"notipipe: {name} rows from id 17 lack 'owner', which has no default: read as StoredAlert",
        f"notipipe: {name} rows from id 19 do not hold its fields in encoding version 1: read as StoredAlert",
        f"notipipe: {name} rows from id 20 hold values V3 refuses (V3.device: expected str, got int 5):"
        " read as StoredAlert",
    ]


def test_a_row_whose_common_columns_hold_no_alert_is_refused() -> None:
    for row, says in [
        ((1, "k", 1000.0, 9, "", "", "{}"), "k.priority: 9 is outside 1..5"),
        ((1, "k", None, 3, "", "", "{}"), "created_at: expected float, got NoneType None"),
        ((1, "k", -5.0, 3, "", "", "{}"), "k.created_at: -5.0 is not a Unix time"),
        ((1, None, 1.0, 3, "", "", "{}"), "row.kind: expected str"),
    ]:
        with pytest.raises((TypeError, ValueError), match=says):
            read_row(row)


def test_a_chunk_decodes_other_kinds_through_the_row_reader(impl: Impl, factory: Any) -> None:
    """The NATS durable subscriber's fast path builds a chunk's alerts straight from its bytes;
    rows of other kinds go through the store's row reader, each with its own id."""
    from notipipe._storage.nats.codec import codec
    from notipipe._twins import available

    push = _push_class()
    factory.register(_name())(push)
    rows = [
        impl.SMSMessage("+15550001000", "a", created_at=1000.0)._row(),
        push("pixel", badge=2, created_at=1001.0)._row(),
        ("never_registered_here", 1002.0, 2, "desk", "", "raw"),
        impl.EmailMessage("ops@example.com", "s", "b", created_at=1003.0)._row(),
    ]
    read = impl.DatabaseConnection.__new__(impl.DatabaseConnection)._message
    base = 5 << 16
    expected = [read((base | i, *row)) for i, row in enumerate(rows)]
    assert [type(m) for m in expected] == [impl.SMSMessage, push, StoredAlert, impl.EmailMessage]
    assert [m.id for m in expected] == [base, base | 1, base | 2, base | 3]
    for name in available():
        data = codec(name).encode_chunk(rows)
        assert codec(name).decode_messages(data, base, impl.EmailMessage, impl.SMSMessage, read) == expected
        with pytest.raises(ValueError, match="kind: expected 'email' or 'sms', got 'push_"):
            codec(name).decode_messages(data, base, impl.EmailMessage, impl.SMSMessage)


class _WithCache:
    """A base with a slot of its own, not a field: a method may keep anything there."""

    __slots__ = ("_cache",)


def test_a_kind_with_a_slot_of_its_own_in_a_reference_cycle_is_collected(impl: Impl, factory: Any) -> None:
    # The compiled constructor leaves an object of checked plain values to no collection; a slot
    # that is no field may close a cycle, so such a class's objects stay tracked.
    @dataclass(frozen=True, slots=True)
    class Cached(_WithCache):
        device: str = ""
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    factory.register(_name())(Cached)
    freed = threading.Event()

    class Witness:
        def __del__(self) -> None:
            freed.set()

    message = Cached("phone")
    object.__setattr__(message, "_cache", {"self": message, "witness": Witness()})
    del message
    gc.collect()
    assert freed.is_set(), "a kind in a reference cycle was never collected"


def test_a_class_changed_after_registration_is_called_as_it_says_now(impl: Impl, factory: Any) -> None:
    # The compiled twin's C constructor steps aside once the class changes (its version tag).
    push = _push_class()
    factory.register(_name())(push)
    assert push("a").device == "a"
    calls: list[str] = []
    generated = vars(push)["__init__"]

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append("init")
        generated(self, *args, **kwargs)

    push.__init__ = counted
    assert push("b").device == "b"
    assert calls == ["init"]


def test_the_rows_of_a_batch_are_each_class_s_own_row(impl: Impl, factory: Any) -> None:
    # The writer's rows of a batch (``rows``): a kind's row as its ``_row`` gives it, built-ins
    # and kinds mixed, in order; the compiled twin makes a kind's in C, untracked by the GC.
    rows = importlib.import_module(f"notipipe._kinds_{impl.name}").rows
    push = _push_class()
    factory.register(_name())(push)
    batch = [push("a", "t", priority=4), impl.SMSMessage("+15550001000", "b"), push("c"), push("d")]
    gc.disable()  # a collection could untrack the rows itself
    try:
        made = rows(tuple(batch))  # any iterable, in both twins
        tracked = gc.is_tracked(made[0])
    finally:
        gc.enable()
    # The same rows as each class's _row (in C both ways on the compiled twin: the next test
    # shows rows does not call it).
    assert made == [m._row() for m in batch]
    own = json.loads(made[0][5])["fields"]
    assert (own["device"], own["title"]) == ("a", "t")
    assert tracked is (impl.name == "py")


def test_the_rows_of_a_class_changed_after_registration_are_its_row_now(impl: Impl, factory: Any) -> None:
    # As its constructor, a kind's row in C steps aside once the class changes (its version tag).
    rows = importlib.import_module(f"notipipe._kinds_{impl.name}").rows
    push = _push_class()
    factory.register(_name())(push)
    assert rows([push("a")])[0][5].startswith('{"v": ')
    push._row = lambda self: ("changed", 1.0, 3, "", "", "{}")
    assert rows([push("b"), push("c")]) == [("changed", 1.0, 3, "", "", "{}")] * 2


def _str_registering_another_kind() -> type:
    """An annotation whose evaluation registers a kind: the class's own code, run while its
    annotations are resolved."""

    @dataclass(frozen=True, slots=True)
    class Inner(BaseMessage):
        note: str = ""

    _Factory.register(f"inner_{next(_NAMES)}")(Inner)
    return str


_NAMES = itertools.count()


def test_a_class_whose_annotations_register_another_kind_registers_too() -> None:
    # No lock is held while the class's annotations are resolved (user code): one that
    # registers a kind itself does not deadlock.
    import threading

    @dataclass(frozen=True, slots=True)
    class Outer(BaseMessage):
        device: _str_registering_another_kind() = ""  # type: ignore[valid-type]

    done = threading.Event()

    def register() -> None:
        _Factory.register(f"outer_{next(_NAMES)}")(Outer)
        done.set()

    threading.Thread(target=register, daemon=True).start()
    assert done.wait(30), "register() deadlocked on its own lock"
    assert Outer(device="x").device == "x"
