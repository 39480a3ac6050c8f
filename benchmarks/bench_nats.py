"""NATS JetStream writer benchmark: save_many into a stream, against a raw nats-py ceiling.

    python benchmarks/bench_nats.py [--alerts N] [--repeats R] [--chunk C] [--window W]
                                    [--observers K] [--processes 1,2] [--server URL] [--quick]

notipipe: ``DatabaseConnection("nats://127.0.0.1:PORT/bench").save_many`` of 1,000-alert calls,
then ``close()`` (which flushes: every chunk acknowledged by the server when the clock stops),
with K no-op observers subscribed (default none). Its figure includes connecting, checking the
stream, building each alert's row, the group commit, encoding the chunks, the publishes and
their acknowledgements.

The ceiling, measured in the same run on the same server: the same alerts encoded with the same
codec twin in chunks of C alerts (default 10,000, notipipe's ``batch_size``: what its writer
sends once saturated), published with nats-py as a careful asyncio user would: ``js.publish``
with a ``Nats-Msg-Id`` header per chunk, the next chunk encoded while up to W publishes wait for
their acknowledgements (default W: 1 and 4, both shown), connecting included. Each chunk is
encoded from the alerts as notipipe's writer encodes them, ``encode_messages`` (each alert's
fields read, no row built: the fastest way the codec offers); also shown: each alert's row built
(``_row()``) and the rows encoded (``encode_chunk``), and rows built before the clock starts
(the encoding alone). notipipe's ratio is against the best raw figure from the alerts (and,
last column, against the best raw figure of all).

Then 1, 2, ... writer processes at once (``--processes``), each writing N alerts: their total
against as many raw processes (window W). The stream is purged before each run; raw and
notipipe runs alternate, so that a machine busy with something else weighs on both alike.

Without ``--server`` a throwaway nats-server is started (``_nats.py``: fsync on every write).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).parent))

from _common import label
from _nats import STREAM, chunks_in, create_stream, purge, start_server, target
from _pg import run_together
from bench_store import Tally, make_messages

from notipipe import DatabaseConnection, EmailMessage, SMSMessage
from notipipe._storage.nats.client import SUBJECT_PREFIX
from notipipe._storage.nats.codec import CODEC

CALL = 1000  # alerts per save_many call
FROM_ALERTS = "from the alerts"
#: How a raw chunk's bytes are made: from the alerts (the fastest way: ``encode_messages``, as
#: notipipe's writer does), from the alerts' rows built then, or from rows built before.
SOURCES: Final = {
    "messages": f"{FROM_ALERTS}, encoded straight from the alerts",
    "alert rows": f"{FROM_ALERTS}, encoded as rows",
    "rows": "rows built before",
}


def _rows_of(batch: Sequence[Any]) -> list[Any]:
    return [m._row() for m in batch]


def encode(part: Sequence[Any], source: str) -> bytes:
    """One raw chunk's bytes (see ``SOURCES``)."""
    if source == "messages":
        return bytes(CODEC.encode_messages(part, EmailMessage, SMSMessage, _rows_of))
    return bytes(CODEC.encode_chunk(_rows_of(part) if source == "alert rows" else part))


async def raw_publish(server_url: str, items: Sequence[Any], chunk: int, window: int, source: str) -> None:
    """The ceiling: encode ``chunk`` items at a time (``source``: see ``SOURCES``; ``items`` are
    the alerts, or for "rows" their rows), publish each chunk with its message id while up to
    ``window`` publishes await their acknowledgements."""
    import nats

    nc = await nats.connect(server_url)
    js = nc.jetstream()
    prefix = uuid.uuid4().hex[:20]
    slots = asyncio.Semaphore(window)
    errors: list[BaseException] = []

    async def publish(n: int, data: bytes) -> None:
        try:
            headers = {"Nats-Msg-Id": f"{prefix}-{n}"}
            await js.publish(SUBJECT_PREFIX + STREAM, data, timeout=5, stream=STREAM, headers=headers)
        except Exception as error:  # noqa: BLE001 - reported after the run
            errors.append(error)
        finally:
            slots.release()

    tasks = []
    for n, start in enumerate(range(0, len(items), chunk)):
        part = items[start : start + chunk]
        data = encode(part, source)
        await slots.acquire()
        tasks.append(asyncio.create_task(publish(n, data)))
    await asyncio.gather(*tasks)
    await nc.close()
    if errors:
        raise errors[0]


def run_raw(publish: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(publish())


def notipipe_save(url: str, messages: Sequence[EmailMessage | SMSMessage], observers: int) -> None:
    db = DatabaseConnection(url)
    for _ in range(observers):
        db.subscribe(Tally())
    for i in range(0, len(messages), CALL):
        db.save_many(messages[i : i + CALL])
    db.close()  # flushes: every chunk acknowledged when the clock stops


def timed(fn: Callable[[], object], server_url: str) -> float:
    asyncio.run(purge(server_url))
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def worker(mode: str, server_url: str, args: argparse.Namespace) -> None:
    """One writer process: build the alerts, say ready, wait for "go", write, say when."""
    messages = make_messages(args.alerts)
    # Imported before the clock, as a running application has it (notipipe imports it when its
    # store connects, inside the clock): the import alone takes a good part of a run, and it
    # weighed on every path alike.
    import nats.js  # noqa: F401

    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    if mode == "raw":
        asyncio.run(raw_publish(server_url, messages, args.chunk, args.window, "messages"))
    else:
        notipipe_save(target(server_url), messages, args.observers)
    print("done", start, time.monotonic(), flush=True)


def processes(mode: str, server_url: str, n: int, args: argparse.Namespace) -> float:
    """``n`` writer processes at once; total alerts per second from the first start to the last end."""
    cmd = [sys.executable, __file__, "--worker", mode, "--server", server_url, "--alerts", str(args.alerts)]
    cmd += ["--chunk", str(args.chunk), "--window", str(args.window), "--observers", str(args.observers)]
    asyncio.run(purge(server_url))
    spans = run_together(cmd, n, timeout=600)
    return float(n * args.alerts / (max(e for _, e in spans) - min(s for s, _ in spans)))


def run(server_url: str, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """alerts/s by path (each the median of the repeats), and notipipe's mean rows per chunk."""
    messages = make_messages(args.alerts)
    rows = [m._row() for m in messages]
    url = target(server_url)
    create_stream(server_url)
    one: dict[str, Callable[[], object]] = {}
    for source, shown in SOURCES.items():
        items = rows if source == "rows" else messages
        for w in sorted({1, args.window}):
            publish = functools.partial(raw_publish, server_url, items, args.chunk, w, source)
            one[f"raw nats-py, {shown}, {w} in flight"] = functools.partial(run_raw, publish)
    fanout = f" + fan-out to {args.observers}" if args.observers else ""
    one[f"notipipe save_many{fanout}"] = lambda: notipipe_save(url, messages, args.observers)
    samples: dict[str, list[float]] = {name: [] for name in one}
    for _ in range(args.repeats):
        for name, fn in one.items():
            samples[name].append(args.alerts / timed(fn, server_url))
    per_chunk = args.alerts / asyncio.run(chunks_in(server_url))  # the last run was notipipe's
    for n in args.processes:
        for _ in range(args.repeats):
            for mode, name in (
                ("raw", f"raw nats-py, {SOURCES['messages']}, {args.window} in flight"),
                ("notipipe", "notipipe"),
            ):
                key = f"{n} process{'es' if n > 1 else ''}: {name}"
                samples.setdefault(key, []).append(processes(mode, server_url, n, args))
    return {name: statistics.median(figures) for name, figures in samples.items()}, per_chunk


def table(rates: dict[str, float]) -> list[str]:
    """alerts/s, and each against the best raw figure doing the same work (from the alert objects,
    as many processes) and against the best raw figure of all."""
    lines = ["| path | alerts/s | vs raw from the alerts | vs best raw |", "|---|---:|---:|---:|"]
    for name, rate in rates.items():
        prefix = name.split(": ")[0] + ": " if ": " in name else ""
        raws = {
            k: r for k, r in rates.items() if k.startswith(prefix + "raw") and (": " in k) == bool(prefix)
        }
        same = max(r for k, r in raws.items() if FROM_ALERTS in k)
        lines.append(f"| {name} | {rate:,.0f} | {rate / same:.0%} | {rate / max(raws.values()):.0%} |")
    return lines


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=200_000, help="alerts per run (default 200,000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure, median kept (default 5)")
    parser.add_argument("--chunk", type=int, default=10_000, help="raw rows per chunk (default 10,000)")
    parser.add_argument("--window", type=int, default=4, help="raw publishes in flight (default 4; 1 too)")
    parser.add_argument("--observers", type=int, default=0, help="notipipe observers subscribed (default 0)")
    parser.add_argument(
        "--processes",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=[1, 2],
        help="writer process counts, comma-separated (default 1,2; '' for none)",
    )
    parser.add_argument("--server", default=None, help="a nats-server URL (default: a throwaway one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--worker", choices=("raw", "notipipe"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.alerts, args.repeats, args.processes = 3000, 1, [1]
    if args.worker:
        worker(args.worker, args.server, args)
        return
    before = load()
    server: Any = None if args.server else start_server()
    try:
        rates, per_chunk = run(args.server or server.url, args)
    finally:
        if server is not None:
            server.stop()
    print(f"# NATS JetStream writer, {args.alerts:,} alerts per process, median of {args.repeats}: {label()}")
    print(f"# fsync on every write; {before} before, {load()} after")
    print(f"# notipipe's chunks: {per_chunk:,.0f} alerts each on average; raw's: {args.chunk:,}")
    print()
    print("\n".join(table(rates)))


if __name__ == "__main__":
    main()
