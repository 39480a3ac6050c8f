"""Reading a notipipe stream: chunks by stream sequence, rows with their ids.

A stored alert's id is ``seq << 16 | position``: the stream sequence of the chunk's message and
the alert's place in the chunk (a chunk holds at most ``MAX_CHUNK_ROWS`` alerts). Ids so grow in
stream order, which is the order the server stored the chunks in, they fit in an int64 (a stream
sequence below 2**47), and "every alert after id N" resumes exactly.

Each read is one direct get (``$JS.API.DIRECT.GET``, any replica answers) where the stream allows
it, else the stream leader's message get; a read of the whole stream (the counts) costs one round
trip per chunk.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from notipipe._storage.nats.client import REQUEST_TIMEOUT, NatsClient

__all__ = [
    "ID_SHIFT",
    "MAX_CHUNK_ROWS",
    "ORIGIN_HEADER",
    "Chunk",
    "chunk_at",
    "chunk_before",
    "chunks_from",
    "make_id",
    "split_id",
    "stream_created",
    "stream_info",
]

#: Bits of an id that hold the position within the chunk.
ID_SHIFT: Final = 16
#: The most alerts one chunk (one JetStream message) holds.
MAX_CHUNK_ROWS: Final = 1 << ID_SHIFT
#: The header naming the writing host and process of a chunk (``host pid``).
ORIGIN_HEADER: Final = "Notipipe-Origin"
_log = logging.getLogger("notipipe")
#: (server address, stream, seq) of the unreadable chunks this process warned about: each once. Bounded:
#: past it, the set starts again (a warning may then come again), never grows without end.
_warned: set[tuple[str, str, int]] = set()
_warned_lock = threading.Lock()
_WARNED_MAX: Final = 10_000


def make_id(seq: int, position: int) -> int:
    return seq << ID_SHIFT | position


def split_id(message_id: int) -> tuple[int, int]:
    """``(seq, position)`` of an id; seq 0 means "before the first chunk"."""
    return message_id >> ID_SHIFT, message_id & (MAX_CHUNK_ROWS - 1)


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    rows: list[tuple[Any, ...]]
    origin: str
    #: Why the chunk's bytes do not decode (another tool's message, another codec version): such
    #: a chunk holds no rows and every reader skips it. None for a notipipe chunk.
    error: str | None = None

    def stored(self, after_position: int = -1) -> list[tuple[object, ...]]:
        """The chunk's rows with their ids in front, those past ``after_position``."""
        base = self.seq << ID_SHIFT
        return [(base | i, *row) for i, row in enumerate(self.rows) if i > after_position]


def _chunk(client: NatsClient, msg: Any, codec: ModuleType) -> Chunk:
    headers = msg.headers or {}
    seq, origin = int(msg.seq), str(headers.get(ORIGIN_HEADER, ""))
    try:
        return Chunk(seq, codec.decode_chunk(msg.data or b""), origin)
    except ValueError as error:  # not a chunk of this notipipe: skipped, never a reader's end
        _warn_unreadable(client, seq, str(error))
        return Chunk(seq, [], origin, str(error))


def _warn_unreadable(client: NatsClient, seq: int, error: str) -> None:
    key = (client.target.address, client.target.stream, seq)
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _WARNED_MAX:
            _warned.clear()
        _warned.add(key)
    _log.warning(
        "stream %s: the message at sequence %d is not a notipipe chunk this version reads (%s); skipped",
        client.target.stream,
        seq,
        error,
    )


def _direct(client: NatsClient) -> bool:
    return bool(getattr(client.config, "allow_direct", False))


def chunk_at(client: NatsClient, seq: int, codec: ModuleType, *, following: bool) -> Chunk | None:
    """The chunk at ``seq`` (``following``: the first one at or after it), None if there is none."""
    errors = client.nats.js.errors
    subject = client.target.subject if following else None
    try:
        msg = client.call(
            lambda: client.js.get_msg(
                client.target.stream, seq=seq, subject=subject, direct=_direct(client), next=following
            )
        )
    except errors.NotFoundError:
        return None
    return _chunk(client, msg, codec)


def chunk_before(client: NatsClient, seq: int, first: int, codec: ModuleType) -> Chunk | None:
    """The last chunk at or below ``seq`` and at or above ``first`` (None if none is left)."""
    while seq >= max(first, 1):
        chunk = chunk_at(client, seq, codec, following=False)
        if chunk is not None:
            return chunk
        seq -= 1  # deleted or expired: the one before
    return None


def chunks_from(
    client: NatsClient, seq: int, codec: ModuleType, *, upto: int | None = None
) -> Iterator[Chunk]:
    """Every chunk from ``seq`` on, in stream order (up to sequence ``upto``, if given)."""
    while upto is None or seq <= upto:
        chunk = chunk_at(client, seq, codec, following=True)
        if chunk is None or (upto is not None and chunk.seq > upto):
            return
        yield chunk
        seq = chunk.seq + 1


def _stream_info_reply(client: NatsClient) -> dict[str, Any]:
    """The server's answer to a stream info request: the info, or ``{"error": ...}`` (an
    unanswered ask raises)."""
    subject = f"$JS.API.STREAM.INFO.{client.target.stream}"
    reply = client.call(lambda: client.nc.request(subject, b"", timeout=REQUEST_TIMEOUT))
    info: dict[str, Any] = json.loads(reply.data or b"{}")
    return info


def stream_info(client: NatsClient) -> dict[str, Any] | None:
    """The stream's info as the server tells it (None: the stream is missing, or no answer)."""
    try:
        info = _stream_info_reply(client)
    except Exception:  # noqa: BLE001 - an outage: the reads that follow say so
        return None
    return None if "error" in info else info


#: JetStream's error code for "stream not found".
STREAM_NOT_FOUND: Final = 10059


def stream_missing(client: NatsClient) -> bool:
    """Whether the server says the stream does not exist (an unanswered ask raises)."""
    return bool((_stream_info_reply(client).get("error") or {}).get("err_code") == STREAM_NOT_FOUND)


def stream_created(client: NatsClient) -> str | None:
    """When the stream was created (a stream made again has a later time; None: not known now)."""
    info = stream_info(client)
    return None if info is None else str(info.get("created"))
