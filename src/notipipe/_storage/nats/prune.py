"""Pruning a NATS stream: whole chunks older than a time, purged from the stream's start.

A stream is an append log: notipipe removes only its oldest chunks, with JetStream's purge by
sequence (``{"seq": N}`` keeps the chunks from N on). A chunk goes only when its newest alert is
older than the cutoff, and only with every chunk before it: never part of a chunk, and a chunk
holding one newer alert keeps the chunks after it too (a prune stops at it). A message that is
not a notipipe chunk (its age unknown) stops the prune the same way. The purge goes a step at a
time (a purge per ``step`` alerts or so), so progress shows on a large stream.

JetStream moves a durable consumer's floor up to the stream's new first sequence by itself; the
prune logs a warning per durable name that had not acknowledged purged chunks, with how many
alerts they held (counted against the acknowledged floor: a chunk in delivery right then counts).
``keep_undelivered`` purges only below every consumer's acknowledged floor. The stream's own
``max_age`` (the URL's ``?max_age=7d``) prunes by age on the server, which is why the
``retention`` option is not read here.
"""

from __future__ import annotations

import logging
from typing import Any

from notipipe._errors import StorageError
from notipipe._storage.group_commit import describe
from notipipe._storage.nats.client import NatsClient, parse_target, redact
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import chunks_from
from notipipe._storage.nats.subscribers import durable_name
from notipipe._storage.prune import PruneRequest
from notipipe._storage.urls import scrub

__all__ = ["prune"]

_log = logging.getLogger("notipipe")


def prune(target: str, request: PruneRequest) -> int:
    """Purge (or with ``dry_run`` count the alerts of) the stream's chunks wholly older than
    ``request.before``; how many alerts went."""
    client = NatsClient(parse_target(target), "notipipe prune")
    try:
        client.connect()
        return _prune(client, request)
    except StorageError:
        raise
    except Exception as error:
        if isinstance(error, (TimeoutError, OSError, client.nats.errors.Error)):
            raise StorageError(redact(target), f"pruning failed: {scrub(describe(error), target)}") from None
        raise
    finally:
        client.close()


def _prune(client: NatsClient, request: PruneRequest) -> int:
    state = client.state()
    first, last = int(state.first_seq), int(state.last_seq)
    floors = _consumer_floors(client)
    lowest = min(floors.values(), default=None) if request.keep_undelivered else None
    done = purged = 0
    keep_from = last + 1
    sizes: list[tuple[int, int]] = []  # (seq, alerts) of the chunks to purge
    for chunk in chunks_from(client, max(first, 1), CODEC, upto=last):
        old = chunk.error is None and bool(chunk.rows) and max(r[1] for r in chunk.rows) < request.before
        if not old or (lowest is not None and chunk.seq >= lowest):
            keep_from = chunk.seq
            break
        done += len(chunk.rows)
        sizes.append((chunk.seq, len(chunk.rows)))
        if not request.dry_run and done - purged >= request.step:
            _purge(client, chunk.seq + 1)
            purged = done
            request.report(done)
    if not request.dry_run and done > purged:
        _purge(client, keep_from)
        request.report(done)
    if not request.dry_run:
        _warn_undelivered(client, floors, sizes)
    return done


def _warn_undelivered(client: NatsClient, floors: dict[str, int], sizes: list[tuple[int, int]]) -> None:
    for name, floor in sorted(floors.items()):
        if lost := sum(n for seq, n in sizes if seq >= floor):
            _log.warning(
                "stream %s: durable name %r had not been delivered %d alerts that were pruned",
                client.target.stream,
                name,
                lost,
            )


def _purge(client: NatsClient, keep_from: int) -> None:
    """Every chunk below sequence ``keep_from`` removed (JetStream's purge by sequence)."""
    client.call(lambda: client.js.purge_stream(client.target.stream, seq=keep_from))


def _consumer_floors(client: NatsClient) -> dict[str, int]:
    """Per durable name of the stream, the lowest sequence its consumer has not acknowledged."""

    async def infos() -> list[Any]:
        return list(await client.js.consumers_info(client.target.stream))

    floors: dict[str, int] = {}
    for info in client.call(infos):
        if info.ack_floor is None or not info.name:
            continue
        try:
            name = durable_name(str(info.name))
        except (ValueError, UnicodeDecodeError):  # another tool's consumer: its own name
            name = str(info.name)
        floors[name] = int(info.ack_floor.stream_seq or 0) + 1
    return floors
