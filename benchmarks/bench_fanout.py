"""Fan-out: ns per message from one DatabaseConnection.notify_all to K no-op observers.

    python benchmarks/bench_fanout.py [--quick]

K = 1, 4 and 16, both twins, against a plain loop over the observers' bound ``update`` (the
baseline) and the peers that are installed: psygnal (``emit``, ``emit_fast``), blinker
(``send``), pyee (``emit``). One message object, delivered N / K times per case.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Observer, Sizes, family_main, open_db, peer, race
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


if __name__ == "__main__":
    sys.exit(family_main(__doc__, measure, lambda result, sizes: fanout_table(result, sizes.__dict__)))
