"""The COPY packer's twins (``_copy_c``, ``_copy_py``): byte-identical payloads for the rows the
PostgreSQL writer builds and for any others, and the same errors with the same messages. (That
PostgreSQL takes the payload is shown by the PostgreSQL store's tests, through the packer.)"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe._storage.postgresql.copy import packer
from notipipe._twins import available

pytestmark = pytest.mark.twin

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
_row = st.tuples(
    st.one_of(st.sampled_from(["email", "sms"]), _text),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    _text,
    _text,
    _text,
)


def _packed(ids: Any, rows: Any, host: Any = "host-1", pid: Any = 4321) -> list[bytes]:
    return [packer(name).pack_rows(ids, rows, host, pid) for name in available()]


def _raised(ids: Any, rows: Any, host: Any = "host-1", pid: Any = 4321) -> list[tuple[type, str]]:
    """What each twin raises for these arguments, as (type, message)."""
    out = []
    for name in available():
        with pytest.raises(Exception) as caught:  # noqa: PT011 - compared across the twins below
            packer(name).pack_rows(ids, rows, host, pid)
        out.append((caught.type, str(caught.value)))
    return out


@given(
    rows=st.lists(st.one_of(st.none(), _row), max_size=20),
    first=st.integers(min_value=-(2**63), max_value=2**63 - 40),
    host=_text,
    pid=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
def test_the_twins_pack_the_same_bytes(rows: list[Any], first: int, host: str, pid: int) -> None:
    ids = list(range(first, first + len(rows)))
    packed = _packed(ids, rows, host, pid)
    assert all(data == packed[0] for data in packed)


@given(rows=st.lists(st.one_of(st.none(), _row), max_size=20), host=_text)
def test_without_ids_the_twins_pack_the_same_bytes_the_id_field_left_out(rows: list[Any], host: str) -> None:
    packed = _packed(None, rows, host)
    assert all(data == packed[0] for data in packed)
    with_ids = _packed([5] * len(rows), rows, host)[0]
    # Each row loses its id: 12 bytes (the id's length and value), and its field count says 8.
    assert len(packed[0]) == len(with_ids) - 12 * sum(row is not None for row in rows)


def test_without_an_id_a_row_is_its_other_fields() -> None:
    (data, *_) = _packed(None, [("sms", 1.5, 3, "+1555", "", "hi")], "h", 9)
    (with_id, *_) = _packed([7], [("sms", 1.5, 3, "+1555", "", "hi")], "h", 9)
    assert data == struct.pack(">h", 8) + with_id[len(struct.pack(">hiq", 9, 8, 7)) :]


def test_a_row_is_its_fields_in_the_binary_copy_format() -> None:
    (data, *_) = _packed([7], [("sms", 1.5, 3, "+1555", "", "héllo")], "h", 9)
    body = "héllo".encode()
    assert data == (
        struct.pack(">hiq", 9, 8, 7)
        + struct.pack(">i", 3)
        + b"sms"
        + struct.pack(">idii", 8, 1.5, 4, 3)
        + struct.pack(">i", 5)
        + b"+1555"
        + struct.pack(">i", 0)
        + struct.pack(">i", len(body))
        + body
        + struct.pack(">i", 1)
        + b"h"
        + struct.pack(">ii", 4, 9)
    )


class _Text(str):
    pass


class _Number(int):
    pass


@pytest.mark.parametrize(
    "row",
    [
        ("sms", 1.0, True, "a", "b", "c"),  # a bool priority
        ("sms", 1.0, _Number(2), "a", "b", "c"),
        ("sms", 1.0, 2, _Text("a"), "b", "c"),
        (_Text("push"), 1.0, 2, "a", "b", "c"),
        ("sms", 1, 2, "a", "b", "c"),  # an int time
    ],
    ids=["bool", "int-subclass", "str-subclass", "kind-subclass", "int-time"],
)
def test_rows_of_other_types_are_packed_alike(row: tuple[Any, ...]) -> None:
    plain = ("email", 2.0, 1, "x", "y", "z")
    packed = _packed([1, 2, 3], [plain, row, plain])
    assert all(data == packed[0] for data in packed)


@pytest.mark.parametrize(
    ("ids", "rows", "host", "pid"),
    [
        ([1], [("sms", 1.0, 2**31, "a", "b", "c")], "h", 1),  # priority past int4
        ([2**63], [("sms", 1.0, 1, "a", "b", "c")], "h", 1),  # id past int8
        ([1], [("sms", 1.0, 1, "\ud800", "b", "c")], "h", 1),  # a lone surrogate
        ([1], [("sms", 1.0, 1, None, "b", "c")], "h", 1),  # no text
        ([1], [("sms", 1.0, 1, "a", "b")], "h", 1),  # a field short
        ([1], [["sms", 1.0, 1, "a", "b", "c", "d"]], "h", 1),  # a list, a field over
        ([1, 2], [("sms", 1.0, 1, "a", "b", "c")], "h", 1),  # more ids than rows
        ([1], [("sms", 1.0, 1, "a", "b", "c")], None, 1),  # no host
        ([1], [("sms", 1.0, 1, "a", "b", "c")], "\udc80", 1),
        ([1], [("sms", 1.0, 1, "a", "b", "c")], "h", 2**31),  # pid past int4
    ],
    ids=[
        "priority",
        "id",
        "surrogate",
        "none-text",
        "short-row",
        "long-list",
        "lengths",
        "no-host",
        "host-surrogate",
        "pid",
    ],
)
def test_the_twins_refuse_alike(ids: Any, rows: Any, host: Any, pid: Any) -> None:
    raised = _raised(ids, rows, host, pid)
    assert all(r == raised[0] for r in raised), raised
