"""The chunk codec's twins (``_chunk_c``, ``_chunk_py``): byte-identical encodings, each decodes
the other's, the same errors with the same messages."""

from __future__ import annotations

import math
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe import _chunk_py
from notipipe._storage.nats.codec import codec
from notipipe._storage.nats.reader import ID_SHIFT
from notipipe._twins import available
from tests.conftest import Impl

pytestmark = pytest.mark.twin

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
_row = st.tuples(
    st.one_of(st.sampled_from(["email", "sms"]), _text),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    _text,
    _text,
    _text,
)


@pytest.fixture(params=available())
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return codec(request.param)


def _same(a: list[Any], b: list[Any]) -> bool:
    """Row lists equal, NaN equal to NaN (the bits round-trip; ``==`` says NaN != NaN)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[1] != y[1] and not (math.isnan(x[1]) and math.isnan(y[1])):
            return False
        if x[:1] + x[2:] != y[:1] + y[2:]:
            return False
    return True


@given(rows=st.lists(_row, max_size=20))
def test_each_twin_decodes_the_others_bytes(rows: list[Any]) -> None:
    twins = [codec(name) for name in available()]
    encoded = [t.encode_chunk(rows) for t in twins]
    assert all(data == encoded[0] for data in encoded)
    for reader in twins:
        for data in encoded:
            assert _same(reader.decode_chunk(data), rows)


def test_the_layout_is_compact(twin: ModuleType) -> None:
    data = twin.encode_chunk([("email", 1.0, 3, "a@b.c", "", "hi")])
    # magic, version, count; kind byte, 8-byte time, 1-byte priority, three short strings
    assert data == b"NP\x01\x01" + b"\x01" + struct.pack("<d", 1.0) + b"\x06\x05a@b.c\x00\x02hi"
    assert len(data) == 4 + 1 + 8 + 1 + 6 + 1 + 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"NP\x07\x00", "notipipe chunk version 7 is unknown: this notipipe reads version 1"),
        (b"XY\x01\x00", "not a notipipe chunk"),
        (b"NP", "notipipe chunk truncated at byte 2"),
        (b"NP\x01\x01\x01", "notipipe chunk truncated"),
        (b"NP\x01\x00\x00", "1 bytes after its last row"),
        (b"NP\x01\x01\x09", "unknown kind code 9"),
        (b"NP\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "varint longer than 64 bits"),
    ],
)
def test_a_bad_chunk_is_refused_alike(twin: ModuleType, data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        twin.decode_chunk(data)
    with pytest.raises(ValueError, match=message) as pure:
        _chunk_py.decode_chunk(data)
    assert str(raised.value) == str(pure.value)


@pytest.mark.parametrize(
    "row",
    [
        ("email", 1, 1, "", "", ""),
        ("email", 1.0, 2**63, "", "", ""),
        ("email", 1.0, 1, "\ud800", "", ""),
        (b"email", 1.0, 1, "", "", ""),
        ("email", 1.0, 1.5, "", "", ""),
        ("email", 1.0, 1, "", None, ""),
        ["email", 1.0, 1, "", "", ""],
    ],
)
def test_a_bad_row_is_refused_alike(twin: ModuleType, row: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as raised:
        twin.encode_chunk([row])
    with pytest.raises((TypeError, ValueError)) as pure:
        _chunk_py.encode_chunk([row])
    assert (type(raised.value), str(raised.value)) == (type(pure.value), str(pure.value))


# -- decode_messages: a chunk straight into its alerts ---------------------------------------------

#: Rows as a writer stores them, and rows another tool could have stored: an address that is
#: none, a line break in a subject, a priority out of range, another kind, a NaN time.
_stored_row = st.tuples(
    st.sampled_from(["email", "sms", "fax"]),
    st.one_of(st.floats(min_value=0, max_value=4e9), st.just(math.nan)),
    st.one_of(st.integers(min_value=1, max_value=5), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.sampled_from(["ops@eu.example.com", "+15550001000", "not an address", "", "é@x.io"]),
    st.sampled_from(["", "cpu at 9%", "two\nlines"]),
    _text,
)


def _outcome(make: Any, *args: Any) -> tuple[str, Any]:
    """``("ok", result)``, or what ``make(*args)`` raised as ``(type name, message)``."""
    try:
        return "ok", make(*args)
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)


def _row_path(data: bytes, base_id: int, impl: Impl) -> list[Any]:
    """The alerts of a chunk as the store builds them: each row of ``decode_chunk``, with its id,
    given to ``DatabaseCore._message`` (what ``decode_messages`` must equal)."""
    rows = _chunk_py.decode_chunk(data)
    return [_store_message(impl)((base_id | i, *row)) for i, row in enumerate(rows)]


def _store_message(impl: Impl) -> Any:
    """``DatabaseCore._message`` of the twin: what the durable subscriber gives ``decode_messages``
    for the rows of other kinds."""
    return impl.DatabaseConnection.__new__(impl.DatabaseConnection)._message


@given(rows=st.lists(_stored_row, max_size=12), seq=st.integers(min_value=1, max_value=2**47 - 1))
def test_decode_messages_builds_what_the_store_builds_row_by_row(
    impl: Impl, rows: list[Any], seq: int
) -> None:
    data = _chunk_py.encode_chunk(rows)
    base_id = seq << ID_SHIFT
    expected = _outcome(_row_path, data, base_id, impl)
    for name in available():
        got = _outcome(
            codec(name).decode_messages,
            data,
            base_id,
            impl.EmailMessage,
            impl.SMSMessage,
            _store_message(impl),
        )
        assert got == expected, name


@pytest.mark.parametrize(
    "data",
    [
        b"NP\x07\x00",
        b"XY\x01\x00",
        b"NP",
        b"NP\x01\x01\x01",
        b"NP\x01\x00\x00",
        b"NP\x01\x01\x09",
        b"NP\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        b"NP\x01\x01\x02" + bytes(8) + b"\x06\x01\xff\x00\x00",  # an address that is not UTF-8
        # a bad first row and bytes after the last: each twin stops at the row
        _chunk_py.encode_chunk([("email", 1.0, 3, "nobody", "", "")]) + b"\x00",
    ],
)
def test_decode_messages_refuses_a_bad_chunk_alike(impl: Impl, data: bytes) -> None:
    answers = {
        name: _outcome(codec(name).decode_messages, data, 1 << ID_SHIFT, impl.EmailMessage, impl.SMSMessage)
        for name in available()
    }
    assert answers["py"][0] != "ok"
    assert all(answer == answers["py"] for answer in answers.values()), answers


@pytest.mark.parametrize("base_id", [-1, 2**63, 1.0, True, "1"])
def test_decode_messages_refuses_a_base_id_alike(twin: ModuleType, base_id: Any) -> None:
    data = _chunk_py.encode_chunk([])
    with pytest.raises(ValueError, match="base_id must be an int from 0 to 2\\*\\*63 - 1") as raised:
        twin.decode_messages(data, base_id, object, object)
    with pytest.raises(ValueError, match="base_id") as pure:
        _chunk_py.decode_messages(data, base_id, object, object)
    assert str(raised.value) == str(pure.value)


def test_decode_messages_reads_a_kind_spelled_out_and_repeated_text(impl: Impl, twin: ModuleType) -> None:
    # Another writer may spell "email" out (code 0) rather than use its code; a field repeating
    # the row before's bytes is read again as equal text, in every field and kind.
    email = b"\x00\x05email" + struct.pack("<d", 2.0) + b"\x06\x05a@b.c\x02hi\x01x"
    sms = b"\x02" + struct.pack("<d", 3.0) + b"\x04\x0c+15550001000\x00\x01x"
    data = b"NP\x01\x04" + email + sms + email + sms
    got = twin.decode_messages(data, 7 << ID_SHIFT, impl.EmailMessage, impl.SMSMessage)
    assert got == _row_path(data, 7 << ID_SHIFT, impl)
    assert [(m.kind, m.id, m.body) for m in got] == [
        ("email", 7 << ID_SHIFT, "x"),
        ("sms", 7 << ID_SHIFT | 1, "x"),
        ("email", 7 << ID_SHIFT | 2, "x"),
        ("sms", 7 << ID_SHIFT | 3, "x"),
    ]
    assert twin.decode_chunk(data) == _chunk_py.decode_chunk(data)


# -- encode_messages: a chunk straight from the alerts ----------------------------------------------


class _Fax:
    """An alert of another kind: its row comes from ``to_rows`` (here its ``_row()``)."""

    def __init__(self, row: Any) -> None:
        self.row = row

    def _row(self) -> Any:
        return self.row


def _to_rows(batch: list[Any]) -> list[Any]:
    """What ``DatabaseConnection`` gives the store: each message's ``_row()``."""
    return [m._row() for m in batch]


def _messages(data: st.DataObject, impl: Impl) -> list[Any]:
    """E-mails and SMSs as users make them, and alerts of another kind (their rows any rows,
    also bad ones)."""
    address = st.sampled_from(["", "ops@eu.example.com", "é@x.io"])
    phone = st.sampled_from(["", "+15550001000"])
    line = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30).filter(str.isprintable)
    body = st.one_of(line, st.just("two\nlines\tand a tab"))
    priority = st.integers(min_value=1, max_value=5)
    created = st.floats(min_value=0, max_value=4e9)
    email = st.builds(impl.EmailMessage, address, line, body, priority=priority, created_at=created)
    sms = st.builds(impl.SMSMessage, phone, line, priority=priority, created_at=created)
    other = st.builds(_Fax, st.one_of(_row, _stored_row, st.just(("fax", 1, 1, "", "", ""))))
    return data.draw(st.lists(st.one_of(email, sms, other), max_size=12))


@given(data=st.data())
def test_encode_messages_writes_what_encode_chunk_writes_for_rows(impl: Impl, data: st.DataObject) -> None:
    messages = _messages(data, impl)
    expected = _outcome(_chunk_py.encode_chunk, _to_rows(messages))
    for name in available():
        got = _outcome(codec(name).encode_messages, messages, impl.EmailMessage, impl.SMSMessage, _to_rows)
        assert got == expected, name


def test_encode_messages_takes_the_other_twins_alerts_through_to_rows(twin: ModuleType) -> None:
    # Classes other than the two given (the other twin's) are rows to_rows gives, in one call.
    from notipipe import _messages_py

    calls: list[int] = []

    def to_rows(batch: list[Any]) -> list[Any]:
        calls.append(len(batch))
        return _to_rows(batch)

    messages = [_messages_py.EmailMessage("a@b.c", "s", "b"), _messages_py.SMSMessage("+15550001000", "x")]
    got = twin.encode_messages(messages * 3, object, object, to_rows)
    assert got == _chunk_py.encode_chunk(_to_rows(messages * 3))
    assert calls == [6]


@pytest.mark.parametrize(
    ("to_rows", "error"),
    [
        (lambda batch: [], "ValueError: to_rows gave 0 rows for 2 messages"),
        (lambda batch: [("fax", 1.0, 1, "", "", "")] * 3, "ValueError: to_rows gave 3 rows for 2 messages"),
        (lambda batch: [("fax", 1.0, 1, "", "", ""), ["fax"]], "TypeError: a chunk row must be a tuple"),
        (lambda batch: [("fax", 1.0, 1, "", "", ""), ("fax", 1, 1, "", "", "")], "TypeError: a chunk row's"),
    ],
)
def test_encode_messages_refuses_what_to_rows_gives_alike(impl: Impl, to_rows: Any, error: str) -> None:
    messages = [_Fax(None), impl.EmailMessage("a@b.c"), _Fax(None)]
    answers = {
        name: _outcome(codec(name).encode_messages, messages, impl.EmailMessage, impl.SMSMessage, to_rows)
        for name in available()
    }
    assert f"{answers['py'][0]}: {answers['py'][1]}".startswith(error)
    assert all(answer == answers["py"] for answer in answers.values()), answers


class _Broken:
    """A class whose fields are read as attributes, one of which raises; or of a wrong type."""

    recipient = "a@b.c"
    subject = ""
    body = ""
    priority = 1

    def __init__(self, created_at: Any) -> None:
        self.created_at = created_at

    @property
    def phone_number(self) -> str:
        raise RuntimeError("no number")


def test_encode_messages_reads_fields_as_attributes_alike(twin: ModuleType) -> None:
    # Classes without C slots are read by attribute, in the pure twin's order, and their values
    # checked as encode_chunk checks a row's.
    assert twin.encode_messages([_Broken(1.0)], _Broken, object, _to_rows) == _chunk_py.encode_chunk(
        [("email", 1.0, 1, "a@b.c", "", "")]
    )
    with pytest.raises(TypeError, match="created_at must be float, got int"):
        twin.encode_messages([_Broken(1)], _Broken, object, _to_rows)
    with pytest.raises(RuntimeError, match="no number"):
        twin.encode_messages([_Broken(1)], object, _Broken, _to_rows)
