"""A chunk of alerts as one JetStream message's bytes: the pure twin (the type truth) of
``_chunk_c.pyx``, byte for byte the same.

Layout, version 1 (every integer little-endian; a *varint* is unsigned LEB128, 7 bits a byte):

* ``b"NP"`` (magic), one version byte (``1``), the row count as a varint;
* per row: a kind byte (``1`` email, ``2`` sms, ``0`` another kind, its name following as a
  string), ``created_at`` as an 8-byte IEEE double, the priority as a zigzag varint (one byte from
  -64 to 63), then address, subject and body, each a string: its UTF-8 length as a varint, then
  the UTF-8 bytes.

A row is ``(kind, created_at, priority, address, subject, body)``, as the group-commit writer
builds them. A reader meeting another version raises ``ValueError`` naming it: a chunk is never
guessed at.

``decode_messages`` reads a chunk straight into its alerts (the durable subscriber's hot path):
no row tuples, each alert built as it is read, the same calls the store makes for a row.
``encode_messages`` is its converse (the writer's hot path): a chunk written from the alerts,
each e-mail's and SMS's row read from its fields, no row tuple built.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

__all__ = ["MAGIC", "VERSION", "decode_chunk", "decode_messages", "encode_chunk", "encode_messages"]

#: (kind, created_at, priority, address, subject, body): one stored message.
type Row = tuple[str, float, int, str, str, str]

MAGIC: Final = b"NP"
VERSION: Final = 1
_KIND_CODES: Final = {"email": 1, "sms": 2}
_KINDS: Final = {1: "email", 2: "sms"}
_DOUBLE: Final = struct.Struct("<d")
#: A priority beyond int64 has no zigzag varint of 10 bytes; the writer never builds one.
_INT64: Final = 2**63
#: What a stored row of another kind raises, as the store says it for a row.
_KIND_ERROR: Final = "kind: expected 'email' or 'sms', got {!r}"


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _string(out: bytearray, text: str) -> None:
    data = text.encode("utf-8")
    _varint(out, len(data))
    out += data


def _header(count: int) -> bytearray:
    out = bytearray(MAGIC)
    out.append(VERSION)
    _varint(out, count)
    return out


def _put_row(out: bytearray, row: object) -> None:
    """One row's bytes, each field checked as it is written (``encode_chunk``'s errors)."""
    if type(row) is not tuple or len(row) != 6:
        raise TypeError(f"a chunk row must be a tuple of 6 items, got {type(row).__name__}")
    kind, created_at, priority, address, subject, body = row
    if type(kind) is not str:
        raise TypeError(f"a chunk row's kind must be str, got {type(kind).__name__}")
    code = _KIND_CODES.get(kind, 0)
    out.append(code)
    if not code:
        _string(out, kind)
    if not isinstance(created_at, float):
        raise TypeError(f"a chunk row's created_at must be float, got {type(created_at).__name__}")
    out += _DOUBLE.pack(created_at)
    if not isinstance(priority, int):
        raise TypeError(f"a chunk row's priority must be int, got {type(priority).__name__}")
    if not -_INT64 <= priority < _INT64:
        raise ValueError(f"a chunk row's priority must fit in 64 bits, got {priority}")
    _varint(out, ((priority << 1) ^ (priority >> 63)) & (2**64 - 1))
    for text in (address, subject, body):
        if type(text) is not str:
            raise TypeError(f"a chunk row's text must be str, got {type(text).__name__}")
        _string(out, text)


def encode_chunk(rows: Iterable[Row]) -> bytes:
    """The bytes of ``rows`` (see the module's layout). ``TypeError``/``ValueError`` for a row
    that is not ``(str, float, int, str, str, str)``; ``UnicodeEncodeError`` for text holding a
    lone surrogate."""
    items = tuple(rows)
    out = _header(len(items))
    for row in items:
        _put_row(out, row)
    return bytes(out)


def _other_rows(others: list[object], to_rows: Callable[[list[Any]], Iterable[Row]]) -> list[Row]:
    if not others:
        return []
    rows = list(to_rows(others))
    if len(rows) != len(others):
        raise ValueError(f"to_rows gave {len(rows)} rows for {len(others)} messages")
    return rows


def encode_messages(
    messages: Iterable[object],
    email_cls: type,
    sms_cls: type,
    to_rows: Callable[[list[Any]], Iterable[Row]],
) -> bytes:
    """The bytes of the chunk of ``messages``, in order, without a row tuple for an e-mail or an
    SMS: a message of exactly ``email_cls`` is the row ``("email", m.created_at, m.priority,
    m.recipient, m.subject, m.body)``, one of ``sms_cls`` ``("sms", m.created_at, m.priority,
    m.phone_number, "", m.body)`` (what their ``_row()`` gives, what ``decode_messages`` builds
    back), and the others (another kind, another class) the rows ``to_rows`` gives for them, in
    one call made first. So, for the store's messages, ``encode_chunk(to_rows(messages))``.

    Raises what ``to_rows`` raises (``ValueError`` if it gives another number of rows), then, in
    the chunk's order, what reading a message's fields raises or ``encode_chunk`` raises for its
    row.
    """
    items = tuple(messages)
    others = [m for m in items if type(m) is not email_cls and type(m) is not sms_cls]
    rows = iter(_other_rows(others, to_rows))
    out = _header(len(items))
    for m in items:
        cls = type(m)
        if cls is email_cls:
            row: object = ("email", m.created_at, m.priority, m.recipient, m.subject, m.body)  # type: ignore[attr-defined]
        elif cls is sms_cls:
            row = ("sms", m.created_at, m.priority, m.phone_number, "", m.body)  # type: ignore[attr-defined]
        else:
            row = next(rows)
        _put_row(out, row)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError(f"notipipe chunk truncated at byte {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            if shift >= 64 or (shift == 63 and b & 0x7F > 1):
                raise ValueError(f"notipipe chunk has a varint longer than 64 bits at byte {self.pos}")
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ValueError(f"notipipe chunk truncated at byte {len(self.data)}")
        piece = self.data[self.pos : end]
        self.pos = end
        return piece

    def string(self) -> str:
        n = self.varint()
        piece = self.take(n)
        try:
            return piece.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"notipipe chunk holds text that is not UTF-8 at byte {self.pos - n}") from None


def _rows(data: bytes) -> Iterator[Row]:
    """Each row of a chunk as it is read; ``ValueError`` as ``decode_chunk`` says, the bytes after
    the last row checked once it was read."""
    data = bytes(data)
    if data[:2] != MAGIC:
        raise ValueError("not a notipipe chunk (its first bytes are not b'NP')")
    if len(data) < 3:
        raise ValueError("notipipe chunk truncated at byte 2")
    if data[2] != VERSION:
        raise ValueError(
            f"notipipe chunk version {data[2]} is unknown: this notipipe reads version {VERSION};"
            " a newer notipipe wrote it"
        )
    reader = _Reader(data)
    reader.pos = 3
    count = reader.varint()
    for _ in range(count):
        code = reader.byte()
        if code == 0:
            kind = reader.string()
        elif code in _KINDS:
            kind = _KINDS[code]
        else:
            raise ValueError(f"notipipe chunk has an unknown kind code {code} at byte {reader.pos - 1}")
        (created_at,) = _DOUBLE.unpack(reader.take(8))
        zigzag = reader.varint()
        priority = (zigzag >> 1) ^ -(zigzag & 1)
        address = reader.string()
        subject = reader.string()
        body = reader.string()
        yield kind, created_at, priority, address, subject, body
    if reader.pos != len(data):
        raise ValueError(f"notipipe chunk has {len(data) - reader.pos} bytes after its last row")


def decode_chunk(data: bytes) -> list[Row]:
    """The rows of a chunk ``encode_chunk`` made; ``ValueError`` for anything else (another
    magic, an unknown version, truncated or trailing bytes)."""
    return list(_rows(data))


def _check_base_id(base_id: int) -> None:
    if type(base_id) is not int or not 0 <= base_id < _INT64:
        raise ValueError(f"base_id must be an int from 0 to 2**63 - 1, got {base_id!r}")


def decode_messages[E, S, O](
    data: bytes,
    base_id: int,
    email_cls: Callable[..., E],
    sms_cls: Callable[..., S],
    other: Callable[[tuple[object, ...]], O] | None = None,
) -> list[E | S | O]:
    """The alerts of a chunk, in order, the one at ``position`` with the id
    ``base_id | position``: an email row built as ``email_cls(address, subject, body,
    priority=..., created_at=..., id=...)``, an sms row as ``sms_cls(address, body, ...)``
    (the calls the store makes for a stored row), a row of another kind as ``other((id, kind,
    created_at, priority, address, subject, body))`` (the store's row reader), each as it is read.

    Raises what ``decode_chunk`` raises for the bytes, ``ValueError`` for a row of another kind
    where ``other`` is None, what a class (or ``other``) raises for a row it refuses: the first
    of these, in the chunk's order (no alert is returned then). ``ValueError`` for a ``base_id``
    that is no int from 0 to 2**63 - 1.
    """
    _check_base_id(base_id)
    messages: list[E | S | O] = []
    for position, (kind, created_at, priority, address, subject, body) in enumerate(_rows(data)):
        if kind == "email":
            messages.append(
                email_cls(
                    address, subject, body, priority=priority, created_at=created_at, id=base_id | position
                )
            )
        elif kind == "sms":
            messages.append(
                sms_cls(address, body, priority=priority, created_at=created_at, id=base_id | position)
            )
        elif other is not None:
            row = (base_id | position, kind, created_at, priority, address, subject, body)
            messages.append(other(row))
        else:
            raise ValueError(_KIND_ERROR.format(kind))
    return messages
