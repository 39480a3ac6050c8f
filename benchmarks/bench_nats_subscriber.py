"""NATS durable subscriber benchmark: its rate against a raw pull consumer, and its lag under load.

    python benchmarks/bench_nats_subscriber.py [--alerts N] [--repeats R] [--writers W]
                                               [--rate A] [--each E] [--server URL] [--quick]

Rate (a backlog drained; raw and notipipe alternate, median of R): N alerts are saved into the
stream (notipipe ``save_many``, untimed: chunks of about 10,000 alerts) after the consumer was
made, then read from the start. The rate's clock runs from the consumer's first ask to its last
alert (raw: the pull subscription bound, before the first ``fetch``; notipipe: ``subscribe``
returned), so each receives every chunk inside it; the time from connecting to that first ask is
shown apart:

* raw: nats-py ``pull_subscribe_bind`` on a durable pull consumer (explicit acks, nats-py's
  defaults: up to 1,000 chunks unacknowledged), ``fetch`` of 64 chunks, each decoded with the
  same codec twin into its rows and acknowledged (``msg.ack()``, not awaited by the server);
  then the same with each row also built as its ``EmailMessage``/``SMSMessage`` (its id
  included) and given to the same counter's ``update``, the work notipipe does per alert;
  then the same alerts built by the codec's ``decode_messages`` (the decoder notipipe's
  subscriber uses: each chunk straight into its alerts, no row tuples) and given to ``update``;
  then that again with one chunk in flight (``max_ack_pending`` 1, ``fetch`` of 1,
  ``ack_sync``): how notipipe's subscriber kept stream order before it held back chunks itself;
* notipipe: ``DatabaseConnection(url).subscribe(observer, durable_name=...)`` resuming the name
  (made before the alerts were saved), each alert built again as an ``EmailMessage`` /
  ``SMSMessage`` and given to ``update`` (a counter), each chunk acknowledged after its last
  ``update`` (up to ``IN_FLIGHT`` chunks in flight, delivered in stream order, on a thread of
  the subscription while the client's loop thread reads the next ones).

The fair ceiling is "raw: decode_messages, update": the same chunks decoded into the same alerts
by the same decoder and given to ``update``, with nats-py's own pipelining (up to 1,000 chunks
unacknowledged) and no ordering or hand-over between threads; "raw: decode" delivers nothing
(decoding only) and is shown as the bound no subscriber reaches.

Lag (as ``bench_pg_subscriber.py``): W writer processes (``save_many``, 1,000 alerts a call,
each alert created just before its call; A alerts/s each, or unpaced with ``--rate 0``; E
alerts each) while one durable subscriber in this process delivers them. Reported: the
writers' total rate, the subscriber's rate from its first delivery to its last, the lag of each
alert from its ``created_at`` to its ``update`` call (the writer's group commit, the publish and
its fsync, the consumer's delivery and the chunk before it are in it), p50 and p99.

Without ``--server`` a throwaway nats-server is started (``_nats.py``: fsync on every write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import label
from _nats import STREAM, create_stream, purge, start_server, target
from _pg import run_together
from bench_nats import notipipe_save
from bench_store import make_messages

from notipipe import DatabaseConnection, EmailMessage, SMSMessage
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import ID_SHIFT

CALL = 1000  # alerts per save_many call
FETCH = 64  # chunks per raw fetch
RAW = "raw nats-py pull consumer: decode"
RAW_ALERTS = "raw nats-py pull consumer: decode, build each alert, update"
RAW_MESSAGES = "raw nats-py pull consumer: decode_messages, update"
RAW_ONE = "raw nats-py pull consumer, one chunk in flight: decode_messages, update"
RAWS = (RAW, RAW_ALERTS, RAW_MESSAGES, RAW_ONE)


class Count:
    """The drain's observer: counts, notes the last delivery, says when all are in."""

    def __init__(self, expected: int) -> None:
        self.n = 0
        self.last = 0.0
        self.expected = expected
        self.all_in = threading.Event()

    def update(self, message: object) -> None:
        self.n += 1
        if self.n >= self.expected:
            self.last = time.perf_counter()
            self.all_in.set()


class Lag:
    """The lag run's observer: when each alert arrived, and how long after its creation."""

    def __init__(self, expected: int) -> None:
        self.lags: list[float] = []
        self.first = self.last = 0.0
        self._expected = expected
        self.all_in = threading.Event()

    def update(self, message: EmailMessage | SMSMessage) -> None:
        now = time.time()
        if not self.lags:
            self.first = now
        self.lags.append(now - message.created_at)
        self.last = now
        if len(self.lags) >= self._expected:
            self.all_in.set()


# -- the rate: a backlog drained -------------------------------------------------------------------


async def raw_consumer(server_url: str, durable: str, *, one: bool) -> None:
    """The raw consumer's durable pull consumer, delivering what is stored from now on (``one``:
    one chunk in flight, as notipipe's)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(server_url)
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW,
        max_ack_pending=1 if one else None,
    )
    await nc.jetstream().add_consumer(STREAM, config)
    await nc.close()


async def raw_drain(server_url: str, durable: str, expected: int, *, case: str) -> tuple[float, float]:
    """Fetch, decode and acknowledge chunks until ``expected`` alerts were decoded (``RAW_ALERTS``:
    each row also built as an ``EmailMessage``/``SMSMessage`` with its id and given to a counter's
    ``update``; ``RAW_MESSAGES``: each chunk decoded into those alerts by ``decode_messages``,
    each given to ``update``; ``RAW_ONE``: that, fetching one chunk at a time and waiting for
    each acknowledgement); the times of the first ``fetch`` and of the end, past the last chunk's
    acknowledgement (written to the socket, not awaited, but for ``RAW_ONE``)."""
    import nats

    nc = await nats.connect(server_url)
    psub = await nc.jetstream().pull_subscribe_bind(durable=durable, stream=STREAM)
    count = Count(expected)
    got = 0
    one = case == RAW_ONE
    first = time.perf_counter()  # bound: the first fetch asks now
    while got < expected:
        for msg in await psub.fetch(1 if one else FETCH, timeout=5):
            base = int(msg.metadata.sequence.stream) << ID_SHIFT
            if case in (RAW_MESSAGES, RAW_ONE):
                rows = CODEC.decode_messages(msg.data, base, EmailMessage, SMSMessage)
                update = count.update
                for message in rows:
                    update(message)
            else:
                rows = CODEC.decode_chunk(msg.data)
                if case == RAW_ALERTS:
                    as_alerts(rows, base, count.update)
            got += len(rows)
            await (msg.ack_sync() if one else msg.ack())
    last = time.perf_counter()
    await nc.close()
    return first, last


def as_alerts(rows: list[Any], base: int, update: Callable[[object], None]) -> None:
    """What a nats-py user wanting notipipe's alerts would write: each row built as its alert."""
    for position, (kind, created_at, priority, address, subject, body) in enumerate(rows):
        if kind == "email":
            update(
                EmailMessage(
                    address, subject, body, priority=priority, created_at=created_at, id=base | position
                )
            )
        else:
            update(SMSMessage(address, body, priority=priority, created_at=created_at, id=base | position))


def notipipe_drain(url: str, durable: str, expected: int) -> tuple[float, float]:
    """Deliver ``expected`` alerts to a counter; the times ``subscribe`` returned and of the last
    ``update``."""
    db = DatabaseConnection(url)
    count = Count(expected)
    db.subscribe(count, durable_name=durable)
    first = time.perf_counter()  # subscribed: its first pull goes out right after
    if not count.all_in.wait(600):
        raise SystemExit(f"the durable subscriber got {count.n:,} of {expected:,} alerts")
    db.unsubscribe(count)
    db.close()
    return first, count.last


def make_notipipe_consumer(url: str, durable: str) -> None:
    """Subscribe once so that the name exists (its consumer delivers what is stored after)."""
    db = DatabaseConnection(url)
    count = Count(1)
    db.subscribe(count, durable_name=durable)
    db.unsubscribe(count)
    db.close()


def drain_rates(
    server_url: str, alerts: int, repeats: int
) -> tuple[dict[str, tuple[float, float]], list[float]]:
    """Each consumer draining a backlog of ``alerts``: alerts/s from its first ask to its last
    alert, and the seconds from connecting to the first ask; medians of ``repeats``. Also
    notipipe's rate over the fair ceiling's (``RAW_MESSAGES``) in each round: the two ran a few
    seconds apart, so a round's ratio is less at the mercy of the machine's other work."""
    url = target(server_url)
    messages = make_messages(alerts)
    samples: dict[str, list[tuple[float, float]]] = {
        name: [] for name in (*RAWS, "notipipe durable subscriber")
    }
    for r in range(repeats):
        for case, (name, figures) in enumerate(samples.items()):
            asyncio.run(purge(server_url))
            durable = f"case{case}-{r}"
            if name.startswith("raw"):
                asyncio.run(raw_consumer(server_url, durable, one=name == RAW_ONE))
            else:
                make_notipipe_consumer(url, durable)
            notipipe_save(url, messages, 0)
            start = time.perf_counter()
            if name.startswith("raw"):
                first, last = asyncio.run(raw_drain(server_url, durable, alerts, case=name))
            else:
                first, last = notipipe_drain(url, durable, alerts)
            figures.append((alerts / (last - first), first - start))
    medians = {
        name: (statistics.median(r for r, _ in figures), statistics.median(s for _, s in figures))
        for name, figures in samples.items()
    }
    ours, ceiling = samples["notipipe durable subscriber"], samples[RAW_MESSAGES]
    return medians, [mine / raw for (mine, _), (raw, _) in zip(ours, ceiling, strict=True)]


# -- the lag under writers -------------------------------------------------------------------------


def writer(url: str, alerts: int, rate: float) -> None:
    """One writer process (as bench_pg_subscriber's): say ready, wait for "go", save ``alerts``
    alerts (at most ``rate`` a second, if given), flush, say when."""
    db = DatabaseConnection(url)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    for base in range(0, alerts, CALL):
        batch: list[EmailMessage | SMSMessage] = [
            EmailMessage("ops@eu.example.com", f"cpu at {i % 50}%", f"alert {i}")
            if i % 10 < 7
            else SMSMessage("+15550001000", f"cpu {i % 50}% host-{i % 97}")
            for i in range(base, min(base + CALL, alerts))
        ]
        db.save_many(batch)
        if rate:
            ahead = start + (base + CALL) / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)  # pacing the load, not synchronisation
    db.flush()
    print("done", start, time.time(), flush=True)
    db.close()


def lag_run(server_url: str, each: int, writers: int, rate: float) -> dict[str, str]:
    asyncio.run(purge(server_url))
    url = target(server_url)
    total = each * writers
    lag = Lag(total)
    db = DatabaseConnection(url)
    db.subscribe(lag, durable_name="lag")
    cmd = [
        sys.executable,
        __file__,
        "--writer",
        "--server",
        server_url,
        "--each",
        str(each),
        "--rate",
        str(rate),
    ]
    spans = run_together(cmd, writers, timeout=900)
    if not lag.all_in.wait(600):
        raise SystemExit(f"the subscriber got {len(lag.lags):,} of {total:,} alerts")
    db.unsubscribe(lag)
    db.close()
    first_start, last_end = min(s for s, _ in spans), max(e for _, e in spans)
    q = statistics.quantiles(lag.lags, n=100)
    paced = f", each paced at {rate:,.0f}/s)" if rate else ", unpaced)"
    return {
        "alerts (writers x each)": f"{total:,} ({writers} x {each:,}{paced}",
        "writers, total": f"{total / (last_end - first_start):,.0f} alerts/s",
        "durable subscriber": f"{total / (lag.last - lag.first):,.0f} alerts/s",
        "lag p50": f"{q[49] * 1000:,.1f} ms",
        "lag p99": f"{q[98] * 1000:,.1f} ms",
        "lag max": f"{max(lag.lags) * 1000:,.1f} ms",
        "last delivery after the writers' last flush": f"{max(0.0, lag.last - last_end) * 1000:,.0f} ms",
    }


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=500_000, help="backlog drained (default 500,000)")
    parser.add_argument("--repeats", type=int, default=3, help="drains per figure, median kept (default 3)")
    parser.add_argument(
        "--writers", type=int, default=4, help="writer processes of the lag run (default 4; 0: no lag run)"
    )
    parser.add_argument(
        "--rate", type=float, default=25_000, help="alerts/s per writer (default 25,000; 0: unpaced)"
    )
    parser.add_argument("--each", type=int, default=250_000, help="alerts per writer (default 250,000)")
    parser.add_argument("--server", default=None, help="a nats-server URL (default: a throwaway one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writers < 0 or args.rate < 0 or args.alerts < 1 or args.repeats < 1 or args.each < 1:
        parser.error("--writers and --rate must be 0 or more; --alerts, --repeats and --each 1 or more")
    if args.writer:
        writer(target(args.server), args.each, args.rate)
        return
    if args.quick:
        args.alerts, args.repeats, args.writers, args.each = 3000, 1, min(args.writers, 1), 3000
    before = load()
    server: Any = None if args.server else start_server()
    try:
        server_url = args.server or server.url
        create_stream(server_url)
        rates, rounds = drain_rates(server_url, args.alerts, args.repeats)
        figures = lag_run(server_url, args.each, args.writers, args.rate) if args.writers else {}
    finally:
        if server is not None:
            server.stop()
    print(f"# NATS durable subscriber: {label()}")
    print(f"# fsync on every write; {before} before, {load()} after")
    print()
    print(f"| a backlog of {args.alerts:,} alerts drained, median of {args.repeats} | alerts/s |", end="")
    print(" vs raw: decode | vs raw: decode, build, update | vs raw: decode_messages, update |", end="")
    print(" vs raw, one in flight | connect to first ask |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (rate, wait) in rates.items():
        ratios = " | ".join(f"{rate / rates[raw][0]:.0%}" for raw in RAWS)
        print(f"| {name} | {rate:,.0f} | {ratios} | {wait * 1000:,.0f} ms |")
    print()
    shown = ", ".join(f"{r:.0%}" for r in rounds)
    median = statistics.median(rounds)
    print(f"notipipe / raw: decode_messages, update, round by round: {shown} (median {median:.0%})")
    if not figures:
        return
    print()
    print(f"| while {args.writers} writer processes save | value |")
    print("|---|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
