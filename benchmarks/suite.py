"""notipipe's benchmark suite: fan-out, batches, messages, end-to-end storage, thread scaling.

    python benchmarks/suite.py [--quick] [--out benchmarks/results]

Measures, on the current interpreter, both twins (compiled and pure, imported side by side)
against the peers that are installed (psygnal, blinker, pyee, msgspec, attrs), and writes
``<out>/<tag>.md`` (tables, ratios, target checks) and ``<out>/<tag>.png`` (chart), where
``<tag>`` names the interpreter. Every figure is the median of several repeats, taken
round-robin so that drift hits every case alike; every comparison is a ratio against a baseline
measured in the same run. ``--quick`` shrinks every size (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).parent))

from _common import gil_enabled, label
from bench_store import make_messages, notipipe_end_to_end, raw_executemany, raw_multirow
from report import FROZEN, MSGSPEC, MSGSPEC_FACTORY, NOTHING_SHARED, PLAIN_SHARED

from notipipe import _messages_py, _publisher_py
from notipipe._database import DatabaseCore
from notipipe._factory import MessageFactory
from notipipe._singleton import ThreadSafeSingletonMeta

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
PHONE, BODY, STAMP = "+15551234567", "cpu 97% on host-12", 1_790_000_000.0


# -- the twins, side by side -------------------------------------------------------------------


@dataclass(frozen=True)
class Twin:
    name: str  # "compiled" | "pure"
    SMSMessage: Any
    factory: type[MessageFactory]
    Database: Any


def twins() -> list[Twin]:
    found = [("pure", _messages_py, _publisher_py)]
    try:
        from notipipe import _messages_c, _publisher_c  # type: ignore[attr-defined]

        found.insert(0, ("compiled", _messages_c, _publisher_c))
    except ImportError:
        pass
    out = []
    for name, messages, publisher in found:
        factory = type(f"Factory_{name}", (MessageFactory,), {})
        factory._kinds = {"email": messages.EmailMessage, "sms": messages.SMSMessage}
        namespace = {"_email_cls": messages.EmailMessage, "_sms_cls": messages.SMSMessage}
        database = ThreadSafeSingletonMeta(
            f"DatabaseConnection_{name}", (DatabaseCore, publisher.Publisher), namespace
        )
        out.append(Twin(name, messages.SMSMessage, factory, database))
    return out


def open_db(twin: Twin, path: str = ":memory:") -> Any:
    old = twin.Database.reset_instance()
    if old is not None:
        old.close()
    return twin.Database(path)


# -- timing ------------------------------------------------------------------------------------


def race(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each case; repeats are taken round-robin across the cases."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


class Observer:
    __slots__ = ()

    def update(self, message: object) -> None:
        pass


# -- 1. fan-out --------------------------------------------------------------------------------


def fanout_cases(k: int, n: int, twin_list: list[Twin]) -> dict[str, Callable[[], object]]:
    observers = [Observer() for _ in range(k)]
    updates = tuple(o.update for o in observers)
    message = twin_list[0].SMSMessage(PHONE, BODY, created_at=STAMP)
    stream = [message] * n

    def plain() -> None:
        for m in stream:
            for update in updates:
                update(m)

    cases: dict[str, Callable[[], object]] = {"plain loop over bound update (baseline)": plain}
    for twin in twin_list:
        db = open_db(twin)
        for o in observers:
            db.subscribe(o)

        def via_notipipe(notify: Callable[[object], None] = db.notify_all) -> None:
            for m in stream:
                notify(m)

        cases[f"notipipe {twin.name} DatabaseConnection.notify_all"] = via_notipipe
    try:
        import psygnal

        class Emitter:
            alert = psygnal.Signal(object)

        emitter = Emitter()
        for o in observers:
            emitter.alert.connect(o.update)

        def psygnal_emit(emit: Callable[[object], None] = emitter.alert.emit) -> None:
            for m in stream:
                emit(m)

        def psygnal_emit_fast(emit: Callable[[object], None] = emitter.alert.emit_fast) -> None:
            for m in stream:
                emit(m)

        cases["psygnal emit"] = psygnal_emit
        cases["psygnal emit_fast"] = psygnal_emit_fast
    except ImportError:
        pass
    try:
        import blinker

        signal = blinker.Signal()
        for o in observers:
            signal.connect(o.update, weak=False)

        def blinker_send(send: Callable[[object], object] = signal.send) -> None:
            for m in stream:
                send(m)

        cases["blinker send"] = blinker_send
    except ImportError:
        pass
    try:
        import pyee

        ee = pyee.EventEmitter()
        for o in observers:
            ee.on("alert", o.update)

        def pyee_emit(emit: Callable[..., object] = ee.emit) -> None:
            for m in stream:
                emit("alert", m)

        cases["pyee emit"] = pyee_emit
    except ImportError:
        pass
    return cases


def bench_fanout(sizes: Sizes, twin_list: list[Twin]) -> dict[str, dict[str, float]]:
    """ns per message, for each K, per case."""
    out: dict[str, dict[str, float]] = {}
    for k in (1, 4, 16):
        n = sizes.fanout_messages // k
        seconds = race(fanout_cases(k, n, twin_list), sizes.repeats)
        out[str(k)] = {name: s / n * 1e9 for name, s in seconds.items()}
    return out


# -- 2. batches --------------------------------------------------------------------------------


def bench_batches(sizes: Sizes, twin_list: list[Twin]) -> dict[str, float]:
    """ns per message: notify_many of a batch against notify_all once per message, K = 4."""
    n = sizes.batch
    cases: dict[str, Callable[[], object]] = {}
    for twin in twin_list:
        db = open_db(twin)
        for _ in range(4):
            db.subscribe(Observer())
        batch = [twin.SMSMessage(PHONE, BODY, created_at=STAMP) for _ in range(n)]

        def one_by_one(notify: Callable[[object], None] = db.notify_all, batch: list[object] = batch) -> None:
            for m in batch:
                notify(m)

        cases[f"{twin.name}: notify_all x {n:,}"] = one_by_one
        cases[f"{twin.name}: notify_many({n:,})"] = lambda db=db, batch=batch: db.notify_many(batch)
    return {name: s / n * 1e9 for name, s in race(cases, sizes.repeats).items()}


# -- 3. messages -------------------------------------------------------------------------------


def message_makers(twin_list: list[Twin]) -> dict[str, Callable[[], object]]:
    """Makers of a 5-field record (phone, body, priority, created_at, id), strings shared."""
    from dataclasses import dataclass as dc

    @dc(slots=True)
    class SlotsDC:
        phone_number: str
        body: str
        priority: int
        created_at: float
        id: int

    @dc(slots=True, frozen=True)
    class FrozenSlotsDC:
        phone_number: str
        body: str
        priority: int
        created_at: float
        id: int

    class NT(NamedTuple):
        phone_number: str
        body: str
        priority: int
        created_at: float
        id: int

    makers: dict[str, Callable[[], object]] = {
        "dataclass(slots=True) (baseline)": lambda: SlotsDC(PHONE, BODY, 3, STAMP, 0),
        FROZEN: lambda: FrozenSlotsDC(PHONE, BODY, 3, STAMP, 0),
        "NamedTuple": lambda: NT(PHONE, BODY, 3, STAMP, 0),
    }
    for twin in twin_list:
        cls, create = twin.SMSMessage, twin.factory.create_message
        makers[f"notipipe {twin.name} SMSMessage(...)"] = lambda cls=cls: cls(
            PHONE, BODY, priority=3, created_at=STAMP, id=0
        )
        makers[f"notipipe {twin.name} create_message('sms', ...)"] = lambda create=create: create(
            "sms", phone_number=PHONE, body=BODY, priority=3, created_at=STAMP, id=0
        )
    try:
        import msgspec

        class MsgspecStruct(msgspec.Struct, gc=False):
            phone_number: str
            body: str
            priority: int
            created_at: float
            id: int

        makers[MSGSPEC] = lambda: MsgspecStruct(PHONE, BODY, 3, STAMP, 0)
        # The same keywords notipipe's call takes (its priority, created_at and id are keyword-only).
        makers["msgspec Struct(gc=False), keywords"] = lambda: MsgspecStruct(
            PHONE, BODY, priority=3, created_at=STAMP, id=0
        )
        # create_message's peer: the same dispatch by kind name, written for msgspec records.
        msgspec_kinds: dict[str, Callable[..., object]] = {"sms": MsgspecStruct}

        def msgspec_factory(kind: str, /, **fields: object) -> object:
            return msgspec_kinds[kind](**fields)

        makers[MSGSPEC_FACTORY] = lambda: msgspec_factory(
            "sms", phone_number=PHONE, body=BODY, priority=3, created_at=STAMP, id=0
        )
    except ImportError:
        pass
    try:
        import attrs

        @attrs.frozen
        class AttrsFrozen:
            phone_number: str
            body: str
            priority: int
            created_at: float
            id: int

        makers["attrs frozen (slots)"] = lambda: AttrsFrozen(PHONE, BODY, 3, STAMP, 0)
    except ImportError:
        pass
    return makers


def bench_messages(sizes: Sizes, twin_list: list[Twin]) -> dict[str, dict[str, float]]:
    """ns per object (creation) and bytes per object (tracemalloc), per maker."""
    makers = message_makers(twin_list)
    n = sizes.objects

    def timed(make: Callable[[], object]) -> Callable[[], object]:
        def loop() -> None:
            for _ in range(n):
                make()

        return loop

    seconds = race({name: timed(make) for name, make in makers.items()}, sizes.repeats)
    out: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        out[name] = {"ns": seconds[name] / n * 1e9, "bytes": bytes_per_object(make, sizes.memory_objects)}
    return out


def bytes_per_object(make: Callable[[], object], n: int) -> float:
    held: list[object] = [None] * n  # the list itself is allocated before tracing starts
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        held[i] = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return (after - before) / n


# -- 4. end-to-end -----------------------------------------------------------------------------


def bench_end_to_end(sizes: Sizes, twin_list: list[Twin]) -> dict[str, float]:
    """alerts/s: save_many + fan-out to 4 observers into a file, against the raw ceilings."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"

        def fresh() -> None:
            for twin in twin_list:
                old = twin.Database.reset_instance()
                if old is not None:
                    old.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

        messages = make_messages(sizes.alerts)
        rows = [m._row() for m in messages]
        cases: dict[str, Callable[[], object]] = {
            "raw executemany (ceiling)": lambda: raw_executemany(path, rows),
            "raw multi-row INSERT": lambda: raw_multirow(path, rows),
        }
        for twin in twin_list:
            cases[f"notipipe {twin.name} save_many + fan-out to 4"] = lambda twin=twin: notipipe_end_to_end(
                path, messages, 4, database=lambda p: twin.Database(p, batch_size=10_000)
            )
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(sizes.repeats):
            for name, fn in cases.items():
                fresh()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        fresh()
    return {name: sizes.alerts / statistics.median(t) for name, t in times.items()}


# -- 5. thread scaling -------------------------------------------------------------------------


class Worker:
    """A shared observer doing a little CPU work per message, writing no shared state."""

    __slots__ = ()

    def update(self, message: Any) -> None:
        h = 0
        for ch in message.body:
            h = (h * 31 + ord(ch)) & 0xFFFF


def _reference_deliver(message: Any) -> None:
    # The observers' work, four times a message, with nothing shared between threads. A
    # module-level function: on 3.13t it becomes immortal once a thread starts, so calling it
    # writes no reference count (a nested function would be shared, and written, by every thread).
    body = message.body
    for _ in range(4):
        h = 0
        for ch in body:
            h = (h * 31 + ord(ch)) & 0xFFFF


def _plain_loop_over(updates: list[Callable[[Any], None]]) -> Callable[[Any], None]:
    # A nested function, like notipipe's fan-out: shared by the threads, its reference count
    # written by each call from both, as the fan-out's is.
    def deliver(message: Any, updates: list[Callable[[Any], None]] = updates) -> None:
        for update in updates:
            update(message)

    return deliver


def _drive(
    deliver: Callable[[Any], object], chunks: list[list[Any]], barrier: threading.Barrier, window: float
) -> tuple[int, float]:
    """Deliver messages, a chunk at a time, for ``window`` seconds: (alerts, seconds taken)."""
    barrier.wait()
    start = time.perf_counter()
    end = start + window
    done = 0
    while True:
        for chunk in chunks:
            for message in chunk:
                deliver(message)
            done += len(chunk)
            now = time.perf_counter()
            if now >= end:
                return done, now - start


# The stand-in processes of _other_vcpus_busy: spin until the parent is gone (an orphan left by a
# killed suite stops within milliseconds).
_SPINNER = """
import os, sys
parent = int(sys.argv[1])
print("spinning", flush=True)
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextlib.contextmanager
def _other_vcpus_busy(count: int) -> Iterator[None]:
    """Keep ``count`` vCPUs busy with processes that spin and share nothing with us."""
    command = [sys.executable, "-c", _SPINNER, str(os.getpid())]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(count)]
    try:
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # spinning from here on
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def _rate(t: int, deliver: Callable[[Any], object], streams: list[Any], window: float) -> float:
    """alerts/s of ``t`` threads, each delivering its own stream for ``window`` seconds.

    The sum of each thread's own rate: a thread on a slower vCPU adds less, it does not hold up
    the total the way a fixed amount of work per thread (waiting for the last one) would.
    """
    barrier = threading.Barrier(t)
    out: list[tuple[int, float]] = [(0, 1.0)] * t

    def run(i: int) -> None:
        out[i] = _drive(deliver, streams[i], barrier, window)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(t)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done / seconds for done, seconds in out)


def bench_scaling(sizes: Sizes, twin_list: list[Twin]) -> dict[str, Any]:
    """alerts/s with T threads notifying their own streams through the one DatabaseConnection.

    The first case is the machine's own ceiling: the same per-message work in T threads that
    share nothing at all; the second, a plain loop over shared observers (see below).

    Two baselines for the speed-up. On this VM a lone thread runs up to 1.7x faster while the
    other vCPU idles than while it is busy (host turbo or a shared core: the 1-thread rate of the
    nothing-shared case jumps between about 40,000 and 70,000 alerts/s from one second to the
    next, while two threads run at about 40,000 each). So every T is measured twice: as is, and
    with every vCPU busy (T threads plus cpu_count - T processes that spin and share nothing),
    which holds the clock equal across T and leaves the cost of sharing alone in the ratio.
    Rounds are interleaved (every case at every T back to back) and each speed-up is the median
    of each round's own ratio. Returns {"rates": {case: {T: median alerts/s}}, "ratios": {case:
    {T: median speed-up}}, "of_ceiling": {case: {T: median of each round's speed-up over the
    nothing-shared case's}}, and the same three with every vCPU busy, prefixed "busy_"}.
    """
    cpus = os.cpu_count() or 1
    counts = sorted({1, 2, cpus})
    window = sizes.scaling_window
    chunk = 250  # messages between two looks at the clock

    def streams_of(cls: Callable[..., object]) -> list[list[list[object]]]:
        # One stream per thread, made apart: threads share the observers, never the messages.
        return [
            [
                [cls(PHONE, f"{BODY} {i}", created_at=STAMP) for i in range(start, start + chunk)]
                for start in range(0, sizes.scaling_messages, chunk)
            ]
            for _ in range(max(counts))
        ]

    cases: dict[str, tuple[Callable[[Any], object], Any]] = {
        NOTHING_SHARED: (_reference_deliver, streams_of(_messages_py.SMSMessage))
    }
    # The observers are shared between the threads, as a user's dashboards would be; calling a
    # shared object's method writes its reference count from every thread. This case pays that
    # and nothing else: a plain loop over the same kind of shared observers, no notipipe.
    cases[PLAIN_SHARED] = (
        _plain_loop_over([Worker().update for _ in range(4)]),
        streams_of(_messages_py.SMSMessage),
    )
    for twin in twin_list:
        db = open_db(twin)
        for _ in range(4):
            db.subscribe(Worker())
        cases[twin.name] = (db.notify_all, streams_of(twin.SMSMessage))
    runs: dict[str, dict[str, dict[str, list[float]]]] = {
        mode: {name: {str(t): [] for t in counts} for name in cases} for mode in ("as_is", "busy")
    }
    for _ in range(sizes.scaling_rounds):
        for name, (deliver, streams) in cases.items():
            for t in counts:
                gc.collect()
                runs["as_is"][name][str(t)].append(_rate(t, deliver, streams, window))
                if t < cpus:
                    with _other_vcpus_busy(cpus - t):
                        runs["busy"][name][str(t)].append(_rate(t, deliver, streams, window))
                else:  # every vCPU is busy already
                    runs["busy"][name][str(t)].append(runs["as_is"][name][str(t)][-1])

    def speedups(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
        # Each round's own T-thread / 1-thread ratio.
        return {
            n: {t: [x / one for x, one in zip(v, by_t["1"], strict=True)] for t, v in by_t.items()}
            for n, by_t in samples.items()
        }

    def medians(samples: dict[str, dict[str, list[float]]]) -> Any:
        return {n: {t: statistics.median(v) for t, v in by_t.items()} for n, by_t in samples.items()}

    out: dict[str, Any] = {}
    for mode, prefix in (("as_is", ""), ("busy", "busy_")):
        ratios = speedups(runs[mode])
        ceiling = ratios[NOTHING_SHARED]
        out[f"{prefix}rates"] = medians(runs[mode])
        out[f"{prefix}ratios"] = medians(ratios)
        # Each round's speed-up over the nothing-shared one of the same round: what sharing
        # costs, with the machine's state of that moment divided out.
        out[f"{prefix}of_ceiling"] = medians(
            {
                n: {t: [x / c for x, c in zip(v, ceiling[t], strict=True)] for t, v in by_t.items()}
                for n, by_t in ratios.items()
            }
        )
    return out


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    repeats: int
    fanout_messages: int
    batch: int
    objects: int
    memory_objects: int
    alerts: int
    scaling_messages: int
    scaling_window: float
    scaling_rounds: int


FULL = Sizes(
    repeats=7,
    fanout_messages=400_000,
    batch=10_000,
    objects=200_000,
    memory_objects=1_000_000,
    alerts=200_000,
    scaling_messages=20_000,
    scaling_window=0.3,
    scaling_rounds=15,
)
QUICK = Sizes(
    repeats=2,
    fanout_messages=2_000,
    batch=500,
    objects=2_000,
    memory_objects=10_000,
    alerts=3_000,
    scaling_messages=500,
    scaling_window=0.02,
    scaling_rounds=2,
)


def tag() -> str:
    v = sys.version_info
    return f"cpython-{v.major}.{v.minor}{'t' if FREE_THREADED else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run notipipe's benchmark suite on this interpreter.")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that the suite runs, measures nothing"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where to write the table and chart",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    twin_list = twins()
    steps: list[tuple[str, Callable[[Sizes, list[Twin]], Any]]] = [
        ("fanout", bench_fanout),
        ("batches", bench_batches),
        ("messages", bench_messages),
        ("end_to_end", bench_end_to_end),
        ("scaling", bench_scaling),
    ]
    results: dict[str, Any] = {
        "label": label(" and ".join(t.name for t in twin_list)),
        "tag": tag(),
        "free_threaded": FREE_THREADED,
        "gil": gil_enabled(),
        "twins": [t.name for t in twin_list],
        "quick": args.quick,
        "sizes": sizes.__dict__,
    }
    for i, (name, step) in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[name] = step(sizes, twin_list)
        print(f"      done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    for twin in twin_list:
        old = twin.Database.reset_instance()
        if old is not None:
            old.close()
    from report import write_report

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{results['tag']}.json").write_text(json.dumps(results, indent=1))
    md, png = write_report(results, args.out)
    print(md.read_text())
    print(f"wrote {md} and {png if png else '(no chart: matplotlib is not installed)'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
