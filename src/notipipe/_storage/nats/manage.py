"""Deleting and resetting a durable name on NATS: ``notipipe subscriptions --delete/--reset``.

* **Held or not.** A name is held while a client is pinned to its consumer and answers for the
  pin (``subscribers``); a pin nobody answers for, with no chunk waiting for an acknowledgement,
  is a stopped holder's leftover and holds nothing. A held name is refused, naming the holder
  (``pid@host``). The check and the change are two requests: a standby pinned in between
  is treated as a forced holder would be (below).
* **Delete** deletes the consumer. **Reset** deletes it and creates it again, with notipipe's
  settings, delivering from a stream sequence (nats-server 2.12 moves no consumer in place).
* **Forced**, the same is done under a running holder: its next pull is answered "consumer
  deleted", which it reports (the error handler and the log). After a delete it makes the
  consumer again, delivering the alerts stored from then on (as for a consumer deleted by
  hand); after a reset it finds the new consumer, forgets the chunks it had, and delivers from
  the reset position. The ``update`` call in progress finishes; the acknowledgement of its
  chunk goes to the old consumer and is lost.
* **A reset's position.** Ids are ``seq << 16 | position`` and the chunk is the unit a consumer
  delivers, so a reset to id N starts at N's chunk: the alerts of that chunk up to N are
  delivered again, then every later one; when N is its chunk's last alert (or its chunk is
  gone), the next chunk. A reset by time ``since`` starts at the first chunk the server stored
  at or after ``since`` (as ``follow(since=...)``).
"""

from __future__ import annotations

from typing import Any, Final

from notipipe._errors import StorageError
from notipipe._storage.group_commit import describe
from notipipe._storage.nats.client import NatsClient, parse_target, redact
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.follow import start_after_time
from notipipe._storage.nats.reader import chunk_at, split_id
from notipipe._storage.nats.subscribers import NAME_KEY, _api, _consumer_config, _holder, consumer_name
from notipipe._storage.urls import scrub

__all__ = ["delete_subscription", "reset_subscription", "start_sequence"]

#: Times a reset deletes and creates again when another client made the consumer in between.
_ATTEMPTS: Final = 5


def delete_subscription(target: str, name: str, *, force: bool) -> bool:
    """Delete the name's consumer (False: there is none); held: see the module."""

    def delete(client: NatsClient, consumer: str) -> None:
        _delete(client, consumer)

    return _managed(target, name, "delete", force, delete)


def reset_subscription(
    target: str, name: str, *, after_id: int | None, since: float | None, force: bool
) -> bool:
    """Make the name's consumer again, delivering from the reset position (see the module)."""
    upto = after_id if after_id is not None else start_after_time(target, float(since or 0.0))

    def reset(client: NatsClient, consumer: str) -> None:
        _recreate(client, consumer, name, start_sequence(client, upto))

    return _managed(target, name, "reset", force, reset)


def start_sequence(client: NatsClient, after_id: int) -> int:
    """The stream sequence a consumer starts at so that the alert after ``after_id`` is
    delivered: ``after_id``'s chunk, unless it is that chunk's last alert (or no chunk is there)."""
    seq, position = split_id(after_id)
    chunk = chunk_at(client, seq, CODEC, following=False) if seq else None
    if chunk is None or position >= len(chunk.rows) - 1:
        return seq + 1
    return seq


def _managed(target: str, name: str, what: str, force: bool, change: Any) -> bool:
    consumer = consumer_name(name)
    client = NatsClient(parse_target(target), "notipipe subscriptions")
    try:
        client.connect()
        info = _info(client, consumer)
        if info is None:
            return False
        holder = _active_holder(client, consumer, info)
        if holder is not None and not force:
            raise StorageError(
                redact(target),
                f"cannot {what} the durable subscription {name!r}: {holder} holds it (stop that subscriber"
                " first, or force it: its consumer is deleted under it, and it goes on as it then finds it)",
            )
        change(client, consumer)
        return True
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - the caller's StorageError
        raise StorageError(
            redact(target), f"cannot {what} {name!r}: {scrub(describe(error), target)}"
        ) from None
    finally:
        client.close()


def _info(client: NatsClient, consumer: str) -> dict[str, Any] | None:
    """The consumer's info if it is a notipipe durable name's, else None."""
    subject = f"CONSUMER.INFO.{client.target.stream}.{consumer}"
    info = client.call(lambda: _api(client, subject))
    if "error" in info or NAME_KEY not in ((info.get("config") or {}).get("metadata") or {}):
        return None
    return info


def _active_holder(client: NatsClient, consumer: str, info: dict[str, Any]) -> str | None:
    """Who holds the name (``pid@host``, or the pin of a holder that died moments ago), or None."""
    groups = info.get("priority_groups") or []
    pin = next((str(g["pinned_client_id"]) for g in groups if g.get("pinned_client_id")), None)
    holder = _holder(client, consumer, pin)
    if holder is not None and holder.startswith("pin ") and not int(info.get("num_ack_pending", 0)):
        return None  # a stopped holder's waiting pull, pinned: nobody's
    return holder


def _delete(client: NatsClient, consumer: str) -> None:
    """Delete the consumer; gone already is done. The server may fail a delete that races the
    consumer's own state write after removing it: asked again while it is there."""
    stream = client.target.stream
    for _ in range(_ATTEMPTS):
        answer = client.call(lambda: _api(client, f"CONSUMER.DELETE.{stream}.{consumer}"))
        if "error" not in answer or _info(client, consumer) is None:
            return
    raise StorageError(client.shown, f"the consumer {consumer} could not be deleted")


def _recreate(client: NatsClient, consumer: str, name: str, start: int) -> None:
    """The consumer deleted and made again delivering from stream sequence ``start``. A holder
    or standby may make it again in between (with its own start, as for a consumer deleted by
    hand): then deleted again."""
    stream = client.target.stream
    config = {
        **_consumer_config(consumer, name),
        "deliver_policy": "by_start_sequence",
        "opt_start_seq": start,
    }
    body = {"stream_name": stream, "config": config, "action": "create"}
    for _ in range(_ATTEMPTS):
        _delete(client, consumer)
        answer = client.call(lambda: _api(client, f"CONSUMER.CREATE.{stream}.{consumer}", body))
        if "error" not in answer:
            return
    raise StorageError(client.shown, f"the consumer {consumer} could not be made again: {answer['error']}")
