"""Pruning a NATS stream: whole chunks older than a time, purged from the stream's start.

A stream is an append log: notipipe removes only its oldest chunks, with JetStream's purge by
sequence (``{"seq": N}`` keeps the chunks from N on). A chunk goes only when its newest alert is
older than the cutoff, and only with every chunk before it: never part of a chunk, and a chunk
holding one newer alert keeps the chunks after it too (a prune stops at it). A message that is
not a notipipe chunk (its age unknown) stops the prune the same way. The purge goes a step at a
time (a purge per ``step`` alerts or so), so progress shows on a large stream.

JetStream moves a durable consumer's floor up to the stream's new first sequence by itself;
``keep_undelivered`` purges only below every consumer's acknowledged floor. The stream's own
``max_age`` (the URL's ``?max_age=7d``) prunes by age on the server, which is why the
``retention`` option is not read here.
"""

from __future__ import annotations

from typing import Any

from notipipe._errors import StorageError
from notipipe._storage.group_commit import describe
from notipipe._storage.nats.client import NatsClient, parse_target, redact
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import chunks_from
from notipipe._storage.prune import PruneRequest
from notipipe._storage.urls import scrub

__all__ = ["prune"]


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
    floor = _consumers_floor(client) if request.keep_undelivered else None
    done = purged = 0
    keep_from = last + 1
    for chunk in chunks_from(client, max(first, 1), CODEC, upto=last):
        old = chunk.error is None and bool(chunk.rows) and max(r[1] for r in chunk.rows) < request.before
        if not old or (floor is not None and chunk.seq >= floor):
            keep_from = chunk.seq
            break
        done += len(chunk.rows)
        if not request.dry_run and done - purged >= request.step:
            _purge(client, chunk.seq + 1)
            purged = done
            request.report(done)
    if not request.dry_run and done > purged:
        _purge(client, keep_from)
        request.report(done)
    return done


def _purge(client: NatsClient, keep_from: int) -> None:
    """Every chunk below sequence ``keep_from`` removed (JetStream's purge by sequence)."""
    client.call(lambda: client.js.purge_stream(client.target.stream, seq=keep_from))


def _consumers_floor(client: NatsClient) -> int | None:
    """The lowest sequence a durable consumer of the stream has not acknowledged (None: no consumer)."""

    async def floors() -> list[Any]:
        return list(await client.js.consumers_info(client.target.stream))

    infos = client.call(floors)
    seqs = [int(info.ack_floor.stream_seq) + 1 for info in infos if info.ack_floor is not None]
    return min(seqs) if seqs else None
