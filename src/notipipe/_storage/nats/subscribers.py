"""Durable named subscribers on NATS JetStream: ``subscribe(observer, durable_name=...)``.

The promise, for a subscription named N on the stream S:

* **What it is.** N is a durable pull consumer of S (explicit acks, at most ``IN_FLIGHT`` chunks
  delivered and not yet acknowledged: the next ones come while the observer works). NATS forbids
  some characters that notipipe names allow (whitespace, ``.``, ``*``, ``>``, ``/``, anything
  beyond ASCII): the consumer's name is N with every byte of its UTF-8 other than letters, digits,
  ``-`` and ``_`` written ``=XX`` (hex), so the mapping is reversible
  (``consumer_name``/``durable_name``); a name whose mapping passes 255 characters is refused
  (``ValueError``). The consumer carries the metadata ``notipipe_name`` (N).
* **Where it starts.** The first ``subscribe`` with the name N creates the consumer, before
  returning, delivering "new" chunks: every alert stored after ``subscribe`` returned is delivered
  (alerts stored earlier are not; read them with ``after``). A later ``subscribe`` with the name
  N, from any process, resumes where the consumer's acknowledgements stand.
* **What it delivers.** Every alert stored in S, at least once, none skipped, in stream order,
  each with its stored ``id`` (``seq << 16 | position``). A holder delivers a chunk once the chunk
  before it was its own last, or nothing before it waits for an acknowledgement anywhere else (it
  asks the consumer's state): a previous holder's chunks, which the server hands over only once
  their acknowledgement is overdue, go before newer ones the new holder got first. A chunk held
  back longer than ``HOLD_LIMIT`` for an earlier one is delivered anyway, with a warning (the
  earlier one follows when it comes): order is given up, never an alert. The chunk is the unit of
  acknowledgement: it is acknowledged after the ``update`` calls of all its alerts returned. A
  holder that dies (``kill -9``, a lost connection) between them gets its chunk redelivered,
  whole, to the next holder: the alerts of that chunk already delivered are delivered again,
  nothing is missed. Within one holder a chunk redelivered after a lost acknowledgement is not
  delivered again (it is acknowledged again).
* **One holder.** The consumer has the priority group ``notipipe`` with the policy
  ``pinned_client`` (nats-server 2.11): the server delivers to one pinned client at a time. The
  holder's connection keeps a pull request waiting at all times (every ``PULL_EXPIRES`` seconds a
  new one), also while its observer works through a chunk, and keeps every chunk it received and
  has not settled alive (``+WPI`` every ``PROGRESS_EVERY`` seconds). Other processes on N pull
  without the pin and get nothing: they are standbys. The server unpins a holder that made no pull
  for ``PIN_TIMEOUT`` seconds (its process died or was cut off), and pins a standby; a holder that
  unsubscribes unpins itself at once. The chunk the old holder had in hand goes to the new holder
  once its acknowledgement is overdue (``ACK_WAIT`` seconds after the old holder's last sign), and
  nothing newer is delivered before it (see above). The server also pins a pull request left
  waiting by a holder that has since stopped, when a chunk comes; ``subscribe`` unpins such a pin
  (it has no chunk unacknowledged and nobody answers for it on the holder subject), rather than
  waiting ``PIN_TIMEOUT`` for it. A holder told it lost the pin (its pull answered ``423``) makes
  no further ``update`` call for the chunks it had, and gives them back; a holder cut off without
  a word (a partition, a stalled process) goes on with the chunk in hand, and starts no other once
  the server has been silent for ``PIN_TIMEOUT`` seconds: the overlap with the new holder is the
  chunks it started before, delivered twice, never skipped (as the ADR-42 design says, a pin is no
  lock).
* **Failures.** As for PostgreSQL: an ``update`` that raises goes to the database's
  ``error_handler``, and delivery goes on (that alert counts as delivered); a ``BaseException`` is
  reported wrapped in a ``RuntimeError``; a chunk that cannot be decoded, or a row that is no
  alert, is reported with what was read and skipped. A server outage is waited out: the connection
  reconnects, pulls are made again, the acknowledgement of a chunk is retried as a redelivery (not
  delivered again, see above). A consumer deleted under the holder is made again, delivering from
  then on, unless another client made it again within ``MISSING_GRACE`` seconds (a reset: see
  ``manage``), which is then read from where it starts, the old consumer's chunks given back; a
  stream deleted and made again (by the next write: its sequences, and so the ids, start again
  from 1) gets a consumer delivering it from its start; each is reported once.
* **Stopping.** ``unsubscribe(observer)`` (also from inside ``update``) stops delivery before the
  next alert. A chunk delivered whole is acknowledged; a chunk partly delivered is given back
  (``-NAK``) and goes whole to the next holder (its first alerts delivered again). The name is
  unpinned and its consumer stays for the next ``subscribe``.

Delivery runs on a thread of the subscription; the network on the client's event loop thread;
user code is never called on the loop's thread nor with a lock of notipipe's held.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from notipipe._errors import StorageError
from notipipe._failures import DatabaseFailures, ObserverFailures
from notipipe._protocols import ErrorHandler
from notipipe._storage.group_commit import describe
from notipipe._storage.nats.client import REQUEST_TIMEOUT, NatsClient, parse_target, redact
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import MAX_CHUNK_ROWS, chunk_at, make_id, stream_created
from notipipe._storage.urls import scrub

__all__ = [
    "ACK_WAIT",
    "GROUP",
    "PIN_TIMEOUT",
    "NatsDurableSubscription",
    "NatsSubscriptionState",
    "consumer_name",
    "durable_name",
    "list_subscriptions",
]

_log = logging.getLogger("notipipe")

#: The priority group every notipipe consumer has (one group, pinned_client).
GROUP: Final = "notipipe"
#: Seconds without a pull from the pinned holder after which the server pins another client.
PIN_TIMEOUT: Final = 2.0
#: Seconds each pull request waits; the holder sends the next one as it ends.
PULL_EXPIRES: Final = 0.5
#: Seconds after a chunk's delivery (or its last ``+WPI``) before the server delivers it again.
ACK_WAIT: Final = 5.0
#: Seconds between ``+WPI`` for the chunks received and not settled.
PROGRESS_EVERY: Final = 1.0
#: Chunks asked for per pull request (the request waits for the next ones).
PULL_BATCH: Final = 64
#: Chunks delivered to a holder and not yet acknowledged, at most (the consumer's
#: ``max_ack_pending``): the next ones come while the observer works through one. A holder so
#: keeps at most this many times the server's ``max_payload`` bytes in memory.
IN_FLIGHT: Final = 32
#: Seconds between two asks whether a chunk held back for an earlier one may go.
RECHECK: Final = 0.1
#: Seconds a holder that finds its consumer gone waits for it to be there again (a reset makes it
#: again at once) before it makes it again itself.
MISSING_GRACE: Final = 1.0
#: Seconds a chunk is held back for an earlier one before it is delivered anyway (the earlier one
#: then follows): past a takeover's pin timeout and the old holder's acknowledgement wait.
HOLD_LIMIT: Final = 3 * ACK_WAIT
#: Whether the delivery thread waits for each acknowledgement's write (with the GIL: the loop's
#: thread gets the interpreter at once; without it, both threads run at once anyway).
HANDOFF: Final[bool] = getattr(sys, "_is_gil_enabled", lambda: True)()
#: The metadata key that marks a consumer as notipipe's, holding the durable name.
NAME_KEY: Final = "notipipe_name"
#: Each holder answers "who holds this name" on ``<prefix><stream>.<consumer>``.
HOLDER_SUBJECT: Final = "notipipe_holder."
#: NATS's longest consumer name.
_MAX_CONSUMER_NAME: Final = 255
_PLAIN: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_NS: Final = 1_000_000_000


# -- names ----------------------------------------------------------------------------------------


def consumer_name(name: str) -> str:
    """The JetStream consumer name of the durable name ``name`` (reversible: ``durable_name``);
    ``ValueError`` if it would pass NATS's 255 characters."""
    out = "".join(c if c in _PLAIN else "".join(f"={b:02X}" for b in c.encode("utf-8")) for c in name)
    if len(out) > _MAX_CONSUMER_NAME:
        raise ValueError(
            f"durable_name {name!r} takes {len(out)} characters as a NATS consumer name (each character"
            f" other than letters, digits, '-' and '_' takes 3 per UTF-8 byte); NATS allows"
            f" {_MAX_CONSUMER_NAME}"
        )
    return out


def durable_name(consumer: str) -> str:
    """The durable name whose consumer name is ``consumer`` (``consumer_name``'s inverse)."""
    data = bytearray()
    i = 0
    while i < len(consumer):
        if consumer[i] == "=":
            data.append(int(consumer[i + 1 : i + 3], 16))
            i += 3
        else:
            data += consumer[i].encode("ascii")
            i += 1
    return data.decode("utf-8")


def _consumer_config(consumer: str, name: str, *, from_start: bool = False) -> dict[str, Any]:
    return {
        "durable_name": consumer,
        "ack_policy": "explicit",
        "deliver_policy": "all" if from_start else "new",
        "ack_wait": int(ACK_WAIT * _NS),
        "max_ack_pending": IN_FLIGHT,
        "max_deliver": -1,
        "priority_groups": [GROUP],
        "priority_policy": "pinned_client",
        "priority_timeout": int(PIN_TIMEOUT * _NS),
        "metadata": {NAME_KEY: name},
    }


async def _api(client: NatsClient, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JetStream API request; its answer, or ``StorageError`` with the server's description."""
    reply = await client.nc.request(
        f"$JS.API.{subject}", b"" if body is None else json.dumps(body).encode(), timeout=REQUEST_TIMEOUT
    )
    answer: dict[str, Any] = json.loads(reply.data or b"{}")
    return answer


def _ensure_consumer(client: NatsClient, consumer: str, name: str, *, from_start: bool = False) -> None:
    """Create the name's consumer, delivering from now (``from_start``: every chunk the stream
    holds), unless it exists."""
    stream = client.target.stream
    config = _consumer_config(consumer, name, from_start=from_start)
    body = {"stream_name": stream, "config": config, "action": "create"}
    answer = client.call(lambda: _api(client, f"CONSUMER.CREATE.{stream}.{consumer}", body))
    error = answer.get("error")
    if error is None:
        return
    known = client.call(lambda: _api(client, f"CONSUMER.INFO.{stream}.{consumer}"))
    if "error" in known:  # neither made nor there: the create's reason is the one to tell
        raise StorageError(client.shown, f"cannot create the consumer {consumer}: {error.get('description')}")
    config = known.get("config", {})
    if config.get("priority_policy") != "pinned_client":
        raise StorageError(
            client.shown,
            f"the consumer {consumer} exists without notipipe's settings (priority group {GROUP!r},"
            " pinned_client); delete it or use another durable name",
        )
    if config.get("max_ack_pending") != IN_FLIGHT:  # made by an earlier notipipe: one chunk at a time
        config = {**config, "max_ack_pending": IN_FLIGHT}
        update = {"stream_name": stream, "config": config, "action": "update"}
        client.call(lambda: _api(client, f"CONSUMER.CREATE.{stream}.{consumer}", update))


def _release_stale_pin(client: NatsClient, consumer: str, info: dict[str, Any]) -> None:
    """Unpin the name if its pin is nobody's (``info``: the consumer's). The server pins a pull
    request when a chunk comes, also one left waiting by a holder that has since stopped, and
    then waits ``PIN_TIMEOUT`` for it. A live pinned holder has a chunk unacknowledged or
    answers on the holder subject (it listens there before it acknowledges its first chunk), so
    it keeps its pin."""
    stream = client.target.stream
    groups = info.get("priority_groups") or []
    if not any(g.get("pinned_client_id") for g in groups) or int(info.get("num_ack_pending", 0)):
        return
    subject = f"{HOLDER_SUBJECT}{stream}.{consumer}"
    try:
        client.call(lambda: client.nc.request(subject, b"", timeout=1.0), 2.0)
    except client.nats.errors.NoRespondersError:
        client.call(lambda: _api(client, f"CONSUMER.UNPIN.{stream}.{consumer}", {"group": GROUP}))
    except Exception:  # noqa: BLE001 - someone may hold it: the server's timeout decides
        return


def _quiet_upto(info: dict[str, Any]) -> int | None:
    """The consumer's last delivery's sequence if none waits for an acknowledgement (``info``:
    the consumer's), else None."""
    if int(info.get("num_ack_pending", 0)):
        return None
    return int((info.get("delivered") or {}).get("consumer_seq", 0))


# -- the holder's network side (on the client's loop) ---------------------------------------------


@dataclass(slots=True)
class _Delivery:
    msg: Any
    seq: int
    #: The consumer's sequence of this delivery (each delivery, a redelivery too, has the next).
    dseq: int
    generation: int  # the pin's generation when it came: a later one means the pin was lost


def _lost(status: str | None, headers: Any) -> str | None:
    """A pull's answer saying the consumer is gone: deleted under it (409 "Consumer Deleted"), or
    no one answers (503: the consumer, or its stream, missing); as told, else None."""
    described = str(headers.get("Description", "")).strip().splitlines()  # nats-py may add more
    if status == "503" or (status == "409" and described and "deleted" in described[0].lower()):
        return f"status {status} {described[0] if described else 'no responders'}"
    return None


class _Puller:
    """Keeps a pull request waiting on the consumer at all times (so the pin stays while the
    process lives), hands chunks to the delivery thread's queue, and keeps the chunk in hand
    alive. Runs on the client's event loop; touches no user code."""

    def __init__(self, client: NatsClient, consumer: str, identity: str) -> None:
        self.client, self.consumer, self.identity = client, consumer, identity
        self.deliveries: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self.pin: str | None = None
        #: Bumped each time the server says the pin is another client's.
        self.generation = 0
        #: Called (on the loop) right after ``generation`` was bumped.
        self.on_lost: Callable[[], None] | None = None
        #: Every chunk received and not yet acknowledged or given back, by ``id`` of its message:
        #: each is kept alive (``+WPI``) while it waits in the queue, is held, or is in hand.
        #: Added here on the loop, removed by the delivery thread as it settles the chunk.
        self.outstanding: dict[int, _Delivery] = {}
        #: The highest consumer sequence received (set after the chunk is in ``outstanding``).
        self.received = 0
        #: When the server last answered a pull (a chunk or a status).
        self.heard = time.monotonic()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._holder_sub: Any = None
        #: Why pulling stopped (the consumer or stream gone, the server too old), for the delivery
        #: thread to report and mend; None while pulls are answered.
        self.trouble: str | None = None
        self._resumed: asyncio.Event | None = None
        self._refused = False

    def start(self) -> None:
        async def create() -> None:
            self._task = asyncio.ensure_future(self._run())

        self.client.call(create)

    def stop(self) -> None:
        """Stop pulling, and give up the pin if this holder has it. The inbox stays (until the
        client closes): a chunk still coming lands in ``deliveries``, to be given back; once
        unpinned, the server answers this holder's waiting pulls with ``423``, so what is given
        back goes to the next holder, not here."""

        async def close() -> None:
            self._closing = True
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
            await self._unpinned()

        self.client.call(close, REQUEST_TIMEOUT * 2)

    async def _run(self) -> None:
        nc = self.client.nc
        stream = self.client.target.stream
        inbox = nc.new_inbox()
        ended = asyncio.Event()
        received = [0]

        async def on_msg(msg: Any) -> None:
            self.heard = time.monotonic()
            headers = msg.headers or {}
            status = headers.get("Status")
            if status is None and msg.reply:
                await self._received(msg, headers.get("Nats-Pin-Id"))
                received[0] += 1
                if received[0] >= PULL_BATCH:
                    ended.set()
            elif status == "423":  # the pin is another client's: stop delivering what we have
                await self._unpinned(lost=True)
                ended.set()
            elif (trouble := _lost(status, headers)) is not None:
                self.trouble = trouble
                ended.set()
            elif status is not None and status != "100":  # 408 expired, 409 ...: pull again
                ended.set()

        await nc.subscribe(inbox, cb=on_msg)
        self._resumed = asyncio.Event()
        last_progress = time.monotonic()
        while not self._closing:
            refusal = self.client.refusal()
            if refusal is not None:  # a server too old: not a pull to it
                self.trouble, self._refused = str(refusal), True
            elif self._refused:  # a newer server is back: nothing to mend
                self.trouble, self._refused = None, False
            if self.trouble is not None:
                await self._wait_for_mending()
                continue
            ended.clear()
            received[0] = 0
            request: dict[str, Any] = {
                "batch": PULL_BATCH,
                "expires": int(PULL_EXPIRES * _NS),
                "group": GROUP,
            }
            if self.pin is not None:
                request["id"] = self.pin
            with contextlib.suppress(Exception):  # an outage: the next round tries again
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{self.consumer}",
                    json.dumps(request).encode(),
                    reply=inbox,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), PULL_EXPIRES + 1.0)
            if time.monotonic() - last_progress >= PROGRESS_EVERY:
                last_progress = time.monotonic()
                await self._keep_alive()

    async def _received(self, msg: Any, pin: str | None) -> None:
        """A chunk for the delivery thread (its pin noted first: the holder answers for it)."""
        if pin and pin != self.pin:
            await self._pinned(pin)
        sequence = msg.metadata.sequence
        delivery = _Delivery(msg, int(sequence.stream), int(sequence.consumer), self.generation)
        self.outstanding[id(msg)] = delivery
        self.received = max(self.received, delivery.dseq)
        self.deliveries.put(delivery)

    async def _keep_alive(self) -> None:
        """``+WPI`` for every chunk received and not settled: none is given to another before
        its turn comes here."""
        for waiting in list(self.outstanding.values()):
            with contextlib.suppress(Exception):
                await waiting.msg.in_progress()

    async def _wait_for_mending(self) -> None:
        """Hand the trouble to the delivery thread (a ``_Delivery`` without a message), and wait
        until it mended it (or for a while: it may be busy, or the trouble may last)."""
        assert self._resumed is not None
        self._resumed.clear()
        self.deliveries.put(_Delivery(None, 0, 0, self.generation))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._resumed.wait(), PIN_TIMEOUT)

    def resume(self) -> None:
        """Pull again (called by the delivery thread once it dealt with ``trouble``)."""

        async def resumed() -> None:
            self.trouble = None
            self.pin = None  # a consumer made again knows no pin of the old one
            if self._resumed is not None:
                self._resumed.set()

        self.client.call(resumed)

    def forget(self) -> None:
        """Treat every chunk received so far as another consumer's (one deleted since): each is
        given back, not delivered, as after a lost pin (called by the delivery thread)."""

        async def forgotten() -> None:
            self.generation += 1

        self.client.call(forgotten)

    async def _pinned(self, pin: str) -> None:
        self.pin = pin
        if self._holder_sub is None:
            subject = f"{HOLDER_SUBJECT}{self.client.target.stream}.{self.consumer}"

            async def who(msg: Any) -> None:
                await msg.respond(json.dumps({"holder": self.identity, "pin": self.pin}).encode())

            with contextlib.suppress(Exception):
                self._holder_sub = await self.client.nc.subscribe(subject, cb=who)

    async def _unpinned(self, *, lost: bool = False) -> None:
        pin, self.pin = self.pin, None
        if lost:
            self.generation += 1
            if self.on_lost is not None:
                self.on_lost()
        sub, self._holder_sub = self._holder_sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if pin is not None and not lost:  # giving it up: a standby takes over at once
            stream = self.client.target.stream
            with contextlib.suppress(Exception):
                await _api(self.client, f"CONSUMER.UNPIN.{stream}.{self.consumer}", {"group": GROUP})


# -- the delivery thread --------------------------------------------------------------------------


class NatsDurableSubscription:
    """One observer's delivery under one durable name, on a thread of its own."""

    def __init__(
        self,
        target: str,
        name: str,
        observer: Any,
        to_message: Callable[[tuple[object, ...]], object],
        error_handler: Callable[[], ErrorHandler],
        *,
        page: int,
        poll: float,
        codec: ModuleType | None = None,
        message_classes: tuple[type, type] | None = None,
    ) -> None:
        self.target, self.name, self.observer = target, name, observer
        self.consumer = consumer_name(name)
        self._parsed = parse_target(target)
        self._update: Callable[[object], object] = observer.update
        self._to_message = to_message
        # Given: each chunk is decoded straight into its alerts; else built row by row.
        self._classes = message_classes
        self._failures = DatabaseFailures(error_handler)
        self._failed = ObserverFailures(self._failures, observer).failed
        self._poll = poll
        self._codec = codec or CODEC
        self._identity = f"{os.getpid()}@{socket.gethostname()}"
        self._client = NatsClient(self._parsed, f"notipipe subscriber {self._identity}")
        #: The stream sequence of the last chunk this subscription delivered whole.
        self._done_upto = 0
        #: Chunks past ``_done_upto`` delivered whole out of stream order (``HOLD_LIMIT``).
        self._done_ahead: set[int] = set()
        #: A chunk whose delivery ``stop`` interrupted.
        self._unfinished: Any = None
        #: Chunks received ahead of an earlier one still outstanding, by stream sequence, and
        #: since when each waits.
        self._held: dict[int, _Delivery] = {}
        self._held_since: dict[int, float] = {}
        #: A consumer sequence up to which no delivery was waiting for an acknowledgement when this
        #: subscription started (None: some was): the delivery right after it is in order.
        self._quiet_upto: int | None = None
        #: The last chunk ``_in_order`` said must wait, and when to ask again.
        self._checked, self._recheck_at = 0, 0.0
        #: The last trouble reported (each is reported once, until it changes).
        self._told: str | None = None
        #: When the stream this subscription reads was created: a later time means it was made
        #: again (its sequences start again from 1).
        self._created: str | None = None
        #: When the consumer this subscription reads was created: a later time means another
        #: client made it again (``reset_subscription``), with a start of its own.
        self._consumer_created: str | None = None
        self._stop = threading.Event()
        self._stopping = False
        #: Whether the chunk being delivered must halt (``stop`` was called, or the pin lost since
        #: it came): one plain attribute read before every alert, where more would cost more
        #: than the rest of the loop. Set under ``_interrupt_lock``, and reset there at each chunk.
        self._interrupt = False
        self._interrupt_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"notipipe-subscriber-{name}", daemon=True)

    def start(self) -> None:
        """Create the name's consumer if it is new (so the start is fixed on return), then deliver."""
        try:
            self._client.connect()
            _ensure_consumer(self._client, self.consumer, self.name)
            client, subject = self._client, f"CONSUMER.INFO.{self._parsed.stream}.{self.consumer}"
            info = client.call(lambda: _api(client, subject))
            _release_stale_pin(client, self.consumer, info)
            self._quiet_upto = _quiet_upto(info)
            self._consumer_created = info.get("created")
            self._created = stream_created(self._client)
        except StorageError:
            self._client.close()
            raise
        except Exception as error:  # noqa: BLE001 - any first failure is the caller's StorageError
            self._client.close()
            shown = redact(self.target)
            raise StorageError(shown, f"cannot subscribe {self.name!r}: {describe(error)}") from None
        self._thread.start()

    def stop(self) -> None:
        """Stop delivering at the next alert and give the name up; unless called from the delivery
        thread, wait for it (for the ``update`` call in progress, if any)."""
        with self._interrupt_lock:
            self._stopping = self._interrupt = True
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join()

    @property
    def failures(self) -> int:
        return self._failures.count

    def _run(self) -> None:
        puller = _Puller(self._client, self.consumer, self._identity)
        puller.on_lost = self._interrupted
        try:
            puller.start()
            while not self._stop.is_set():
                try:
                    wait = min(self._poll, RECHECK, max(self._recheck_at - time.monotonic(), 0.001))
                    wait = wait if self._held else self._poll
                    delivery = puller.deliveries.get(timeout=wait)
                except queue.Empty:
                    self._deliver_held(puller)  # a chunk held back: may it go now?
                    continue
                self._take(puller, delivery)
        except Exception:  # noqa: BLE001 - a bug must not end delivery silently
            _log.exception("durable subscriber %r on %s failed", self.name, redact(self.target))
        finally:
            with contextlib.suppress(Exception):
                puller.stop()  # unpinned first: what is given back goes to the next holder
            self._give_back(puller)
            with contextlib.suppress(Exception):  # every ack and nak sent is in before the close
                self._client.call(self._client.nc.flush)
            self._client.close()

    def _give_back(self, puller: _Puller) -> None:
        """Chunks received and not delivered whole go back at once (``-NAK``) to the next holder."""
        if self._unfinished is not None:
            self._settle(puller, self._unfinished, "nak")
            self._unfinished = None
        for held in self._held.values():
            self._settle(puller, held.msg, "nak")
        self._held.clear()
        while True:
            try:
                delivery = puller.deliveries.get_nowait()
            except queue.Empty:
                return
            if delivery.msg is not None:
                self._settle(puller, delivery.msg, "nak")

    def _settle(self, puller: _Puller, msg: Any, how: str) -> None:
        """Acknowledge (``ack``) or give back (``nak``) ``msg``: written, not waited for the server's
        word (an acknowledgement lost in an outage brings the chunk again, recognised then by
        ``_done_upto``). With the GIL, waiting for the write hands the interpreter to the loop's
        thread at once, to read the chunks coming in: while this thread decodes, that thread
        would get a turn only once the interpreter's switch interval passed (``HANDOFF``)."""
        puller.outstanding.pop(id(msg), None)
        try:
            if HANDOFF:
                self._client.call(lambda: _sent(msg, how))
            else:
                self._client.submit(lambda: _sent(msg, how)).add_done_callback(
                    lambda sent: self._settled(sent, how)
                )
        except Exception as error:  # noqa: BLE001 - redelivered later, and recognised then
            self._settled_badly(how, error)

    def _settled(self, sent: concurrent.futures.Future[None], how: str) -> None:
        error = None if sent.cancelled() else sent.exception()
        if error is not None:
            self._settled_badly(how, error)

    def _settled_badly(self, how: str, error: BaseException) -> None:
        _log.warning("durable subscriber %r: %s of a chunk failed: %s", self.name, how, describe(error))

    def _take(self, puller: _Puller, delivery: _Delivery) -> None:
        """A delivery from the puller: a trouble to mend, a chunk to settle at once, or a chunk to
        deliver in stream order (held until every chunk before it was delivered)."""
        msg, seq = delivery.msg, delivery.seq
        if msg is None:  # the puller stopped for a trouble, not a chunk
            self._mend(puller)
            return
        if delivery.generation != puller.generation:
            self._settle(puller, msg, "nak")  # came before the pin was lost: the new holder's
            return
        if seq <= self._done_upto or seq in self._done_ahead:  # its acknowledgement got lost
            self._settle(puller, msg, "ack")
            return
        older = self._held.get(seq)
        if older is not None:  # the same chunk again (redelivered while held): one copy kept
            puller.outstanding.pop(id(older.msg), None)
        else:
            self._held_since.setdefault(seq, time.monotonic())
        self._held[seq] = delivery
        self._deliver_held(puller)

    def _deliver_held(self, puller: _Puller) -> None:
        """Deliver the held chunks, lowest sequence first, while each may go (``_in_order``)."""
        while self._held and not self._stopping:
            seq = min(self._held)
            delivery = self._held[seq]
            if delivery.generation != puller.generation:
                del self._held[seq]
                self._settle(puller, delivery.msg, "nak")
                continue
            if time.monotonic() - puller.heard > PIN_TIMEOUT:  # cut off: the pin may be another's
                self._recheck_at = time.monotonic() + RECHECK  # by now; no new chunk is started
                return
            ahead = not self._in_order(puller, delivery)
            if ahead:
                held = time.monotonic() - self._held_since.get(seq, time.monotonic())
                if held < HOLD_LIMIT:
                    return
                _log.warning(
                    "durable subscriber %r: the chunk at sequence %d waited %.0f s for an earlier chunk"
                    " another holder had; delivered now, out of stream order (the earlier one follows)",
                    self.name,
                    seq,
                    held,
                )
            del self._held[seq]
            self._held_since.pop(seq, None)
            self._deliver_chunk(puller, delivery, ahead=ahead)

    def _in_order(self, puller: _Puller, delivery: _Delivery) -> bool:
        """Whether the chunk ``delivery`` may be delivered now: the chunk before it was this
        holder's last, or it is the consumer's first delivery since a time nothing waited for an
        acknowledgement, or the consumer's acknowledgements reach up to it, or no chunk is waiting
        for an acknowledgement anywhere but in this holder (a previous holder's chunks, which the
        server hands to this one once their acknowledgement is overdue, go first)."""
        seq = delivery.seq
        if seq == self._done_upto + 1 or delivery.dseq - 1 == self._quiet_upto:
            return True
        now = time.monotonic()
        if self._checked == seq and now < self._recheck_at:
            return False
        verdict = self._nothing_before(puller, seq)
        if verdict:
            return True
        # Unknown while chunks are still on their way here: asked again as soon as one is in.
        self._checked, self._recheck_at = seq, now + (RECHECK if verdict is False else 0.0)
        return False

    def _nothing_before(self, puller: _Puller, seq: int) -> bool | None:
        """One ask of the consumer's state: True if nothing before ``seq`` waits for an
        acknowledgement elsewhere, False if something may (or the server does not say), None if
        chunks the server had sent when it answered are not all here yet."""
        client, subject = self._client, f"CONSUMER.INFO.{self._parsed.stream}.{self.consumer}"
        try:
            info = client.call(lambda: _api(client, subject))
        except Exception:  # noqa: BLE001 - not known now: asked again later
            return False
        if "error" in info:
            return False
        sent = int((info.get("delivered") or {}).get("consumer_seq", 0))
        if puller.received < sent:
            return None
        # The server's count against this holder's chunks it had sent by then (an
        # acknowledgement still on its way counts as another's: a wait, never a skip).
        outstanding = list(puller.outstanding.values())
        if any(self._done_upto < d.seq < seq for d in outstanding):
            return None  # an earlier chunk is here, still in the queue: it goes first
        mine = len({d.seq for d in outstanding if d.dseq <= sent})
        floor = int((info.get("ack_floor") or {}).get("stream_seq", 0))
        return max(floor, self._done_upto) >= seq - 1 or int(info.get("num_ack_pending", 0)) <= mine

    def _mend(self, puller: _Puller) -> None:
        """The puller stopped for ``puller.trouble``: report it (the error handler and the log);
        if the consumer is gone, make it again (delivering from now on) and pull again."""
        trouble = puller.trouble
        if trouble is None:
            return
        stream = self._parsed.stream
        if self._client.refusal() is not None:
            self._tell(f"{trouble}; the durable subscriber {self.name!r} waits for a newer server")
            return
        client = self._client
        try:
            known = client.call(lambda: _api(client, f"CONSUMER.INFO.{stream}.{self.consumer}"))
        except Exception:  # noqa: BLE001 - JetStream not answering yet (a restart): a wait
            known = {}
        if "error" in known:
            known = self._missing_a_moment(known)
        if "error" not in known:  # there (or not known yet): a restart's passing 503, not a loss
            if self._made_again_elsewhere(known, trouble):
                self._forget(puller)
            puller.resume()
            return
        created = stream_created(client)
        if created is None:  # the stream missing (deleted; made again by the next write): a wait
            self._tell(
                f"the consumer {self.consumer} of stream {stream} is gone ({trouble}): the stream is missing"
            )
            with contextlib.suppress(Exception):
                puller.resume()
            return
        made_again = self._created is not None and created != self._created
        try:
            _ensure_consumer(client, self.consumer, self.name, from_start=made_again)
        except Exception as error:  # noqa: BLE001 - told, and tried again at the next pull
            self._tell(
                f"the consumer {self.consumer} of stream {stream} is gone ({trouble}) and cannot be made"
                f" again: {describe(error)}"
            )
            with contextlib.suppress(Exception):
                puller.resume()
            return
        if made_again:
            self._tell(
                f"stream {stream} was made again (deleted, then created by a write), so its ids start again"
                f" from 1: the consumer {self.consumer} made again; the durable subscriber {self.name!r}"
                " delivers the new stream from its start"
            )
        else:
            self._tell(
                f"the consumer {self.consumer} of stream {stream} was gone ({trouble}): made again; the"
                f" durable subscriber {self.name!r} delivers the alerts stored from now on"
            )
        self._told, self._created = None, created
        with contextlib.suppress(Exception):  # not known: a later reset is then not told apart
            info = client.call(lambda: _api(client, f"CONSUMER.INFO.{stream}.{self.consumer}"))
            self._consumer_created = info.get("created")
        self._forget(puller)
        puller.resume()

    def _missing_a_moment(self, known: dict[str, Any]) -> dict[str, Any]:
        """The consumer's info once it is there again within ``MISSING_GRACE`` seconds, else
        ``known`` (its error): a reset deletes it and makes it again in two requests, and this
        holder must not make it again in between."""
        client, subject = self._client, f"CONSUMER.INFO.{self._parsed.stream}.{self.consumer}"
        deadline = time.monotonic() + MISSING_GRACE
        while time.monotonic() < deadline and not self._stop.wait(RECHECK):
            with contextlib.suppress(Exception):  # not answering: asked again
                again = client.call(lambda: _api(client, subject))
                if "error" not in again:
                    return again
        return known

    def _made_again_elsewhere(self, known: dict[str, Any], trouble: str) -> bool:
        """Whether the consumer ``known`` (its info) was made again by another client since this
        subscription last knew it (a reset: ``reset_subscription``); told if so."""
        created = known.get("created")
        if created is None or self._consumer_created is None or created == self._consumer_created:
            return False
        self._consumer_created = created
        self._tell(
            f"the consumer {self.consumer} of stream {self._parsed.stream} was made again by another client"
            f" ({trouble}; notipipe subscriptions --reset): the durable subscriber {self.name!r} delivers"
            " from where the new consumer starts"
        )
        self._told = None
        return True

    def _forget(self, puller: _Puller) -> None:
        """Forget what this subscription knew of the old consumer: a new one starts elsewhere."""
        self._done_upto = 0  # the stream itself may be new: its sequence starts again from 1
        self._done_ahead.clear()
        self._quiet_upto = 0  # a new consumer: nothing delivered before
        for held in self._held.values():  # the old consumer's: nothing to settle them with
            puller.outstanding.pop(id(held.msg), None)
        self._held.clear()
        self._held_since.clear()
        with contextlib.suppress(Exception):  # the loop gone: nothing more comes from it anyway
            puller.forget()

    def _tell(self, text: str) -> None:
        if text == self._told:
            return
        self._told = text
        error = StorageError(redact(self.target), text)
        _log.error("notipipe: durable subscriber %r: %s", self.name, error)
        self._failed(None, error)

    def _deliver_chunk(self, puller: _Puller, delivery: _Delivery, *, ahead: bool = False) -> None:
        msg, seq = delivery.msg, delivery.seq
        data = msg.data or b""
        messages = self._decode_messages(data, make_id(seq, 0))
        if messages is not None:
            whole = self._deliver_messages(puller, delivery, messages)
        else:
            whole = self._deliver_rows(puller, delivery, self._decode_rows(seq, data))
        if whole:
            if ahead:
                self._done_ahead.add(seq)
            else:
                self._done_upto = seq
                if self._done_ahead:
                    self._done_ahead = {s for s in self._done_ahead if s > seq}
            self._settle(puller, msg, "ack")

    def _decode_messages(self, data: bytes, base_id: int) -> list[object] | None:
        """The chunk's alerts built straight from its bytes (no row tuples); None where this
        subscription builds its alerts otherwise, or where any row would fail (the row path
        then reports each such row and delivers the others)."""
        if self._classes is None:
            return None
        try:
            # Rows of other kinds go through the store's row reader (registered kinds, StoredAlert).
            return self._codec.decode_messages(data, base_id, *self._classes, self._to_message)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - told row by row (or as the chunk) by the row path
            return None

    def _decode_rows(self, seq: int, data: bytes) -> list[tuple[object, ...]]:
        try:
            rows: list[tuple[object, ...]] = self._codec.decode_chunk(data)
        except Exception as error:  # noqa: BLE001 - another tool's message: reported, skipped
            self._failed((seq, data), error)
            return []
        return rows

    def _interrupted(self) -> None:
        with self._interrupt_lock:
            self._interrupt = True

    def _arm(self, puller: _Puller, delivery: _Delivery) -> None:
        """Before a chunk's first alert: ``_interrupt`` says whether it must halt already."""
        with self._interrupt_lock:
            self._interrupt = self._stopping or delivery.generation != puller.generation

    def _deliver_messages(self, puller: _Puller, delivery: _Delivery, messages: list[object]) -> bool:
        """Each alert to ``update``; False if delivery halted before the chunk's end."""
        update, failed = self._update, self._failed
        self._arm(puller, delivery)
        for message in messages:
            if self._interrupt:
                self._halt(puller, delivery)
                return False
            try:
                update(message)
            except Exception as error:  # noqa: BLE001 - reported, never ends the subscription
                failed(message, error)
            except BaseException as error:  # noqa: BLE001 - SystemExit here could only end delivery
                failed(message, _wrapped(error))
        return True

    def _deliver_rows(self, puller: _Puller, delivery: _Delivery, rows: list[tuple[object, ...]]) -> bool:
        """As ``_deliver_messages``, each row built as its alert here (one that holds none is
        reported and skipped)."""
        # Each row's id-prefixed tuple is made as it is delivered, not the chunk's all at once.
        base, deliver = make_id(delivery.seq, 0), self._deliver_one
        self._arm(puller, delivery)
        for position, row in enumerate(rows):
            if self._interrupt:
                self._halt(puller, delivery)
                return False
            deliver((base | position, *row))
        return True

    def _halt(self, puller: _Puller, delivery: _Delivery) -> None:
        """Stop delivering the chunk: once the pin is another's it goes back whole to the new
        holder; once ``stop`` was called it is given back after unpinning."""
        if delivery.generation != puller.generation:
            self._settle(puller, delivery.msg, "nak")
        else:
            self._unfinished = delivery.msg

    def _deliver_one(self, row: tuple[object, ...]) -> None:
        try:
            message = self._to_message(row)
        except Exception as error:  # noqa: BLE001 - a row another tool stored: reported, skipped
            self._failed(row, error)
            return
        try:
            self._update(message)
        except Exception as error:  # noqa: BLE001 - reported, never ends the subscription
            self._failed(message, error)
        except BaseException as error:  # noqa: BLE001 - SystemExit here could only end delivery
            self._failed(message, _wrapped(error))


async def _sent(msg: Any, how: str) -> None:
    """``ack`` or ``nak`` ``msg``, written to the socket before this returns (nats-py's flusher
    writes it on the loop's next round)."""
    await (msg.ack() if how == "ack" else msg.nak())
    await asyncio.sleep(0)


def _wrapped(error: BaseException) -> RuntimeError:
    """A ``BaseException`` from ``update`` as the ``RuntimeError`` the error handler is given."""
    wrapped = RuntimeError(f"update raised {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


# -- notipipe subscriptions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NatsSubscriptionState:
    """One durable name of a stream (a ``SubscriptionInfo``)."""

    name: str
    #: The id of the last alert of the last chunk acknowledged (0: none yet): every alert up to
    #: it is behind the name, every alert after it is still to be delivered.
    last_id: int
    #: Alerts stored after ``last_id`` (those of the chunk in hand included).
    lag: int
    oldest_age: float | None
    #: ``pid@host`` of the holding process; the server's pin id if it does not answer (a holder
    #: dead less than ``PIN_TIMEOUT`` ago); None if no client is pinned.
    holder: str | None

    @property
    def active(self) -> bool:
        return self.holder is not None


def list_subscriptions(target: str, codec: ModuleType | None = None) -> list[NatsSubscriptionState]:
    """Every durable name of the stream at ``target``, by name (``StorageError`` if the server
    cannot be reached)."""
    client = NatsClient(parse_target(target), "notipipe subscriptions")
    try:
        client.connect()
        return _list(client, codec or CODEC)
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - the caller's StorageError
        raise StorageError(
            redact(target), f"cannot list the subscriptions: {scrub(describe(error), target)}"
        ) from None
    finally:
        client.close()


def _list(client: NatsClient, codec: ModuleType) -> list[NatsSubscriptionState]:
    stream = client.target.stream
    names: list[str] = []
    offset = 0
    while True:
        body = {"offset": offset}
        page = client.call(lambda: _api(client, f"CONSUMER.NAMES.{stream}", body))  # noqa: B023 - awaited here
        got = page.get("consumers") or []
        names += got
        offset += len(got)
        if not got or offset >= int(page.get("total", 0)):
            break
    last_seq = int(client.state().last_seq)
    states = []
    for consumer in names:
        subject = f"CONSUMER.INFO.{stream}.{consumer}"
        info = client.call(lambda: _api(client, subject))  # noqa: B023 - awaited here
        config = info.get("config") or {}
        if NAME_KEY not in (config.get("metadata") or {}):
            continue  # another tool's consumer
        states.append(_state(client, codec, consumer, info, last_seq))
    return sorted(states, key=lambda s: s.name)


def _state(
    client: NatsClient, codec: ModuleType, consumer: str, info: dict[str, Any], last_seq: int
) -> NatsSubscriptionState:
    floor = _acknowledged_upto(info)
    last_id = 0
    if floor:
        chunk = chunk_at(client, floor, codec, following=False)
        last_id = make_id(floor, (len(chunk.rows) - 1) if chunk and chunk.rows else MAX_CHUNK_ROWS - 1)
    lag, oldest = 0, None
    seq = floor + 1
    while seq <= last_seq:
        chunk = chunk_at(client, seq, codec, following=True)
        if chunk is None:
            break
        lag += len(chunk.rows)
        if oldest is None and chunk.rows:
            oldest = min(float(row[1]) for row in chunk.rows)
        seq = chunk.seq + 1
    groups = info.get("priority_groups") or []
    pin = next((str(g["pinned_client_id"]) for g in groups if g.get("pinned_client_id")), None)
    return NatsSubscriptionState(
        durable_name(consumer),
        last_id,
        lag,
        None if oldest is None else max(time.time() - oldest, 0.0),
        _holder(client, consumer, pin),
    )


def _acknowledged_upto(info: dict[str, Any]) -> int:
    """The stream sequence up to which the consumer (``info``: its) has everything behind it: its
    acknowledgement floor, or, with nothing waiting for an acknowledgement, its last delivery
    (where a consumer made to start at a sequence stands before it delivered anything)."""
    floor = int((info.get("ack_floor") or {}).get("stream_seq", 0))
    if int(info.get("num_ack_pending", 0)):
        return floor
    return max(floor, int((info.get("delivered") or {}).get("stream_seq", 0)))


def _holder(client: NatsClient, consumer: str, pin: str | None) -> str | None:
    """Who has the pin: the holder answers with its ``pid@host``; a pin nobody answers for
    (the holder died less than ``PIN_TIMEOUT`` ago) is shown as the server's pin id."""
    if pin is None:
        return None
    subject = f"{HOLDER_SUBJECT}{client.target.stream}.{consumer}"
    try:
        reply = client.call(lambda: client.nc.request(subject, b"", timeout=1.0), 2.0)
        answer = json.loads(reply.data)
    except Exception:  # noqa: BLE001 - no one answers: the pin alone is known
        return f"pin {pin}"
    return str(answer["holder"]) if answer.get("pin") == pin else f"pin {pin}"
