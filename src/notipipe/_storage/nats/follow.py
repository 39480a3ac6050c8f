"""Following a notipipe stream: every alert stored after an id (or a time), in stream order.

A follower has a connection of its own (``NatsClient``) and reads chunk after chunk by direct
get from the sequence after the last one it read; with nothing new it waits ``poll`` seconds (or
until ``stop``) and asks again. The stream's order is the order the server stored the chunks in,
so a follower misses nothing and sees nothing twice: ids follow commits. A server outage is
waited out (the connection reconnects by itself; the follower's place is kept in memory), logged
once when it starts.

A stream deleted by an operator and made again (by the next write) starts its sequences, and
so the ids, again from 1. A follower with nothing new asks the stream every ``CHECK_EVERY``
seconds whether it is still the one it read (its creation time) and whether its end is still
at or after the follower's place: if not, it logs a warning once and reads the new stream from
its start (the ids it yields then start again from the new stream's first).
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Generator, Iterator
from types import ModuleType
from typing import Final

from notipipe._errors import StorageError
from notipipe._storage.group_commit import describe
from notipipe._storage.nats.client import REQUEST_TIMEOUT, NatsClient, parse_target, redact
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import (
    MAX_CHUNK_ROWS,
    Chunk,
    chunk_at,
    make_id,
    split_id,
    stream_created,
    stream_info,
)
from notipipe._storage.urls import scrub

__all__ = ["follow_rows", "start_after_time"]

_log = logging.getLogger("notipipe")

type StoredRow = tuple[object, ...]

#: Seconds between two checks, while nothing new comes, that the stream was not made again.
CHECK_EVERY: Final = 1.0


def _connect(target: str) -> NatsClient:
    client = NatsClient(parse_target(target), "notipipe follow")
    try:
        client.connect()
    except Exception as error:  # noqa: BLE001 - any first failure is the caller's StorageError
        client.close()
        raise StorageError(redact(target), f"cannot follow: {scrub(describe(error), target)}") from None
    return client


def start_after_time(target: str, since: float) -> int:
    """The id to follow from (``follow_rows``' ``after_id``) so that the first alert is in the
    first chunk the server stored at or after the Unix time ``since`` (the server's time of
    storing, not the alerts' ``created_at``): one direct get by ``start_time``."""
    client = _connect(target)
    try:
        seq = client.call(lambda: _seq_at_time(client, _rfc3339(since)))
        if seq is None:  # nothing stored since: start after the last chunk
            return make_id(int(client.state().last_seq), MAX_CHUNK_ROWS - 1)
        return make_id(seq - 1, MAX_CHUNK_ROWS - 1)
    except (TimeoutError, OSError, client.nats.errors.Error) as error:
        raise StorageError(redact(target), f"cannot follow: {scrub(describe(error), target)}") from None
    finally:
        client.close()


async def _seq_at_time(client: NatsClient, when: str) -> int | None:
    """The sequence of the first message stored at or after ``when`` (None: there is none)."""
    subject = f"$JS.API.DIRECT.GET.{client.target.stream}"
    reply = await client.nc.request(
        subject, json.dumps({"start_time": when}).encode(), timeout=REQUEST_TIMEOUT
    )
    headers = reply.headers or {}
    if headers.get("Status"):  # 404: no message at or after that time
        return None
    return int(headers["Nats-Sequence"])


def _rfc3339(since: float) -> str:
    return datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat().replace("+00:00", "Z")


def follow_rows(
    target: str,
    after_id: int,
    page: int,
    poll: float,
    stop: threading.Event,
    *,
    codec: ModuleType | None = None,
) -> Generator[list[StoredRow]]:
    """Pages of at most ``page`` rows ``(id, kind, created_at, priority, address, subject, body)``
    stored after ``after_id``, blocking in between, until ``stop`` is set.

    The first connection's failure raises ``StorageError``; later trouble is waited out.
    """
    codec = codec or CODEC
    client = _connect(target)
    shown = redact(target)
    seq, position = split_id(max(after_id, 0))
    if seq == 0:
        seq, position = 1, -1
    warned = False
    created = stream_created(client)
    next_check = time.monotonic() + CHECK_EVERY
    try:
        while not stop.is_set():
            try:
                chunk = chunk_at(client, seq, codec, following=position < 0)
            except Exception as error:  # noqa: BLE001 - an outage: waited out, logged once
                if not warned:
                    _log.warning(
                        "following %s: %s; waiting for the server", shown, scrub(describe(error), target)
                    )
                    warned = True
                stop.wait(poll)
                continue
            if warned:
                _log.warning("following %s: the server answers again", shown)
                warned = False
            if chunk is None:
                if position >= 0:  # the chunk of after_id is gone (expired, deleted): go on after it
                    seq, position = seq + 1, -1
                    continue
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_EVERY
                    made_again = _made_again(client, seq, created)
                    if made_again is not None:
                        created, seq, position = made_again, 1, -1
                        continue
                stop.wait(poll)
                continue
            yield from _pages(chunk, position, page)
            seq, position = chunk.seq + 1, -1
    finally:
        client.close()


def _made_again(client: NatsClient, seq: int, created: str | None) -> str | None:
    """The stream's creation time if it is not the stream the follower read (made again since,
    or its end before the follower's place ``seq``: ids of a stream made again before the
    follow started); logged once. None while it is the same stream, or missing."""
    info = stream_info(client)
    if info is None:
        return None
    now = str(info.get("created"))
    last = int((info.get("state") or {}).get("last_seq", 0))
    if now == created and last >= seq - 1:
        return None
    _log.warning(
        "following %s: stream %s was made again (deleted, then created by a write), so its ids start"
        " again from 1; the follower, waiting for sequence %d, reads the new stream from its start",
        client.shown,
        client.target.stream,
        seq,
    )
    return now


def _pages(chunk: Chunk, position: int, page: int) -> Iterator[list[StoredRow]]:
    rows = chunk.stored(position)
    for start in range(0, len(rows), page):
        yield rows[start : start + page]
