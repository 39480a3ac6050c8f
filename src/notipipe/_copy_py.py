"""A batch of alerts as one ``COPY ... FROM STDIN (FORMAT BINARY)`` payload, built in one piece:
the pure twin (the type truth) of ``_copy_c.pyx``, byte for byte the same.

psycopg's ``write_row`` formats each value through its dumpers, a call per row: in psycopg's C
build a share of the PostgreSQL writer's time, in its pure-Python build (the one free-threaded
interpreters have) most of it. The table's columns are fixed, so the payload is packed here
directly, with one ``struct`` call and four encodes per row, and handed to the server in one
write; the compiled twin writes the same bytes in C.

Format (PostgreSQL docs, "Binary Format" of COPY): a signature, flags and extension length; per
row the field count, then each field as a 4-byte length and its bytes (big-endian numbers,
UTF-8 text); ``-1`` as the trailer.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["COPY_HEADER", "COPY_TRAILER", "pack_rows"]

COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER: Final = struct.pack(">h", -1)

#: Field count 9, then id (length 8, int8).
_HEAD: Final = struct.Struct(">hiq")
#: Field count 8: no id, the table gives it (its identity's default).
_HEAD_NO_ID: Final = struct.pack(">h", 8)
#: created_at (length 8, float8), priority (length 4, int4), then the address's length.
_MIDDLE: Final = struct.Struct(">idiii")
_LENGTH: Final = struct.Struct(">i")
#: kind: its length and bytes, for each kind there is.
_KINDS: Final = {kind: _LENGTH.pack(len(kind)) + kind.encode() for kind in ("email", "sms")}


def pack_rows(
    ids: Sequence[int] | None, rows: Sequence[tuple[Any, ...] | None], host: str, pid: int
) -> bytes:
    """The COPY data of rows of (kind, created_at, priority, address, subject, body) that are
    not None, each with its id of ``ids`` (by position), all from ``host``/``pid``;
    ``COPY_HEADER`` goes before the first, ``COPY_TRAILER`` after the last. With ``ids`` None
    the rows have no id field (a COPY without the id column: the table gives them theirs)."""
    host_bytes = host.encode()
    tail = _LENGTH.pack(len(host_bytes)) + host_bytes + struct.pack(">ii", 4, pid)
    head, middle, length = _HEAD.pack, _MIDDLE.pack, _LENGTH.pack
    kinds = _KINDS
    parts: list[bytes] = []
    append = parts.append
    pairs = ((None, row) for row in rows) if ids is None else zip(ids, rows, strict=True)
    for ident, row in pairs:
        if row is None:
            continue
        kind, created_at, priority, address, subject, body = row
        a = address.encode()
        s = subject.encode()
        b = body.encode()
        append(_HEAD_NO_ID if ids is None else head(9, 8, ident))
        append(kinds.get(kind) or length(len(kind.encode())) + kind.encode())
        append(middle(8, created_at, 4, priority, len(a)))
        append(a)
        append(length(len(s)))
        append(s)
        append(length(len(b)))
        append(b)
        append(tail)
    return b"".join(parts)
