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
from notipipe._twins import available

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
