"""Fan-out: ns per message from one DatabaseConnection.notify_all to K no-op observers.

    python benchmarks/bench_fanout.py [--quick]

K = 1, 4 and 16, both twins, against a plain loop over the observers' bound ``update`` (the
baseline) and the peers that are installed: psygnal (``emit``, ``emit_fast``), blinker
(``send``), pyee (``emit``). One message object, delivered N / K times per case.

Then the same fan-out to 4 shared no-op observers from 2 threads against 1 (each thread takes
``db.notify_all`` itself and sends its own messages), against a plain loop over the thread's own
observers (nothing shared: the machine's ceiling) and a plain loop over the shared ones. With
no work in the observers this is the cost of sharing them and notipipe's state, and little else.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Observer, Sizes, family_main, open_db, peer, race
from bench_scaling import Take, rate
from report import BASE_FANOUT, fanout_table

from notipipe._twins import Twin


def each(send: Callable[[object], object], stream: Sequence[object]) -> Callable[[], None]:
    """A case: ``send(m)`` for every message of the stream."""

    # The callable and the stream are the loop's defaults, local variables, as in every case.
    def loop(send: Callable[[object], object] = send, stream: Sequence[object] = stream) -> None:
        for m in stream:
            send(m)

    return loop


def fanout_cases(k: int, n: int, twin_list: list[Twin]) -> dict[str, Callable[[], object]]:
    observers = [Observer() for _ in range(k)]
    updates = tuple(o.update for o in observers)
    message = twin_list[0].SMSMessage(PHONE, BODY, created_at=STAMP)
    stream = [message] * n

    def plain() -> None:
        for m in stream:
            for update in updates:
                update(m)

    cases: dict[str, Callable[[], object]] = {BASE_FANOUT: plain}
    for twin in twin_list:
        db = open_db(twin)
        for o in observers:
            db.subscribe(o)

        cases[f"notipipe {twin.label} DatabaseConnection.notify_all"] = each(db.notify_all, stream)
    cases.update(_peers(observers, stream))
    return cases


def _peers(observers: list[Observer], stream: Sequence[object]) -> dict[str, Callable[[], object]]:
    cases: dict[str, Callable[[], object]] = {}
    try:
        psygnal = peer("psygnal")

        class Emitter:
            alert = psygnal.Signal(object)

        emitter = Emitter()
        for o in observers:
            emitter.alert.connect(o.update)

        cases["psygnal emit"] = each(emitter.alert.emit, stream)
        cases["psygnal emit_fast"] = each(emitter.alert.emit_fast, stream)
    except ImportError:
        pass
    try:
        blinker = peer("blinker")

        signal = blinker.Signal()
        for o in observers:
            signal.connect(o.update, weak=False)

        cases["blinker send"] = each(signal.send, stream)
    except ImportError:
        pass
    try:
        pyee = peer("pyee")

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


def measure(sizes: Sizes, twin_list: list[Twin]) -> dict[str, dict[str, float]]:
    """ns per message, for each K, per case."""
    out: dict[str, dict[str, float]] = {}
    for k in (1, 4, 16):
        n = sizes.fanout_messages // k
        seconds = race(fanout_cases(k, n, twin_list), sizes.repeats)
        out[str(k)] = {name: s / n * 1e9 for name, s in seconds.items()}
    return out


# -- 2 threads / 1 --------------------------------------------------------------------------

OWN = "plain loop over the thread's own 4 observers (nothing shared)"
SHARED = "plain loop over 4 shared observers, no notipipe"


def _loop_over(updates: tuple[Callable[[object], object], ...]) -> Callable[[object], None]:
    def deliver(message: object, updates: tuple[Callable[[object], object], ...] = updates) -> None:
        for update in updates:
            update(message)

    return deliver


def _own_loop() -> Callable[[object], None]:
    # Made by the thread that runs it: observers, bound methods and function are its own.
    return _loop_over(tuple(Observer().update for _ in range(4)))


def thread_cases(twin_list: list[Twin]) -> dict[str, tuple[Take, Callable[[], object]]]:
    """name -> (what each thread takes as its deliver function, a maker of its messages)."""
    observers = [Observer() for _ in range(4)]
    shared = _loop_over(tuple(o.update for o in observers))
    plain_message = twin_list[0].SMSMessage
    cases: dict[str, tuple[Take, Callable[[], object]]] = {
        OWN: (_own_loop, lambda: plain_message(PHONE, BODY, created_at=STAMP)),
        SHARED: (lambda: shared, lambda: plain_message(PHONE, BODY, created_at=STAMP)),
    }
    for twin in twin_list:
        db = open_db(twin)
        for o in observers:
            db.subscribe(o)
        make = twin.SMSMessage
        cases[f"notipipe {twin.label} DatabaseConnection.notify_all"] = (
            lambda db=db: db.notify_all,
            lambda make=make: make(PHONE, BODY, created_at=STAMP),
        )
    return cases


def measure_threads(sizes: Sizes, twin_list: list[Twin]) -> dict[str, Any]:
    """Per case: median 1-thread rate, median 2/1 speed-up, median of its ratio to OWN's."""
    cases = thread_cases(twin_list)
    chunk = 250
    streams = {
        name: [
            [[make() for _ in range(chunk)] for _ in range(max(1, sizes.scaling_messages // chunk))]
            for _ in range(2)
        ]
        for name, (_, make) in cases.items()
    }
    runs: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name in cases}
    for _ in range(sizes.scaling_rounds):
        for name, (take, _) in cases.items():
            for t in (1, 2):
                runs[name][t].append(rate(t, take, streams[name], sizes.scaling_window))
    speedups = {n: [b / a for a, b in zip(r[1], r[2], strict=True)] for n, r in runs.items()}
    return {
        "load": os.getloadavg(),
        "rounds": sizes.scaling_rounds,
        "cases": {
            n: {
                "one": statistics.median(runs[n][1]),
                "speedup": statistics.median(speedups[n]),
                "of_ceiling": statistics.median(
                    x / c for x, c in zip(speedups[n], speedups[OWN], strict=True)
                ),
            }
            for n in cases
        },
    }


def threads_table(result: dict[str, Any]) -> list[str]:
    load = " ".join(f"{x:.2f}" for x in result["load"])
    lines = [
        "",
        "## Fan-out to 4 shared no-op observers: 2 threads / 1",
        "",
        f"{result['rounds']} interleaved rounds; medians; each speed-up over the nothing-shared "
        f"one of the same round. Load average at the end: {load}.",
        "",
        "| case | 1 thread, messages/s | 2 threads / 1 | of nothing shared |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, c in result["cases"].items():
        lines.append(f"| {name} | {c['one']:,.0f} | {c['speedup']:.2f}x | {c['of_ceiling']:.0%} |")
    return lines


def measure_all(sizes: Sizes, twin_list: list[Twin]) -> dict[str, Any]:
    return {"fanout": measure(sizes, twin_list), "threads": measure_threads(sizes, twin_list)}


if __name__ == "__main__":
    if "--threads" in sys.argv[1:]:  # the 2-thread table alone
        sys.argv.remove("--threads")
        sys.exit(family_main(__doc__, measure_threads, lambda result, sizes: threads_table(result)))
    sys.exit(
        family_main(
            __doc__,
            measure_all,
            lambda result, sizes: [
                *fanout_table(result["fanout"], sizes.__dict__),
                *threads_table(result["threads"]),
            ],
        )
    )
