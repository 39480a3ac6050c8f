"""Helpers shared by the benchmarks: the twins, timing by median of repeats, sizes, labels.

Every figure is the median of several repeats; where cases are compared, the repeats are taken
round-robin so that drift hits every case alike, and every comparison is a ratio against a
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import notipipe
from notipipe._twins import Twin, available, load

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
PHONE, BODY, STAMP = "+15551234567", "cpu 97% on host-12", 1_790_000_000.0


# -- the twins, side by side -------------------------------------------------------------------


def twins() -> list[Twin]:
    """Every twin this process can load, compiled first (``twin.label``: "compiled" / "pure")."""
    return [load(name) for name in available()]


def publishers() -> dict[str, Any]:
    """Each twin's Publisher class by label: the fan-out alone, without the store."""
    return {twin.label: twin.Publisher for twin in twins()}


def open_db(twin: Twin, path: str = ":memory:", **options: Any) -> Any:
    """A fresh instance of the twin's DatabaseConnection (the singleton's old one closed)."""
    close_db(twin)
    return twin.DatabaseConnection(path, **options)


def close_db(twin: Twin) -> None:
    old: Any = twin.DatabaseConnection.reset_instance()
    if old is not None:
        old.close()


def peer(name: str) -> Any:
    """Import an optional peer (psygnal, msgspec, ...): ImportError where it is not installed.

    Imported by name, so that the type checker need not have the peers to check the benchmarks.
    """
    return importlib.import_module(name)


class Observer:
    """A no-op observer: what is measured is the delivery, not the work."""

    __slots__ = ()

    def update(self, message: object) -> None:
        pass


# -- timing ------------------------------------------------------------------------------------


def median_seconds(
    fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (``setup()`` before each, untimed)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def race(
    cases: dict[str, Callable[[], object]], repeats: int, setup: Callable[[], object] | None = None
) -> dict[str, float]:
    """Median seconds of each case; repeats are taken round-robin across the cases.

    ``setup()`` runs, untimed, before each case's every run; without it, a garbage collection.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            if setup is not None:
                setup()
            else:
                gc.collect()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# -- sizes of the families that run.py gathers into results/ ------------------------------------


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
# A smoke test, not a measurement: checks that every family runs.
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


# One family: measures on the given twins at the given sizes, returns its part of the results.
type Measure = Callable[[Sizes, list[Twin]], Any]


def family_main(doc: str | None, measure: Measure, render: Callable[[Any, Sizes], list[str]]) -> int:
    """The command line of one family run alone: ``--quick``, then its table on stdout."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    found = twins()
    try:
        result = measure(sizes, found)
    finally:
        for twin in found:
            close_db(twin)
    print(f"# {label(' and '.join(t.label for t in found))}{' (--quick)' if args.quick else ''}")
    print("\n".join(render(result, sizes)))
    return 0


def family_flag(doc: str | None, measure: Measure, render: Callable[[Any, Sizes], list[str]]) -> int | None:
    """``--family [--quick]`` on a bench_*.py with a command line of its own: run.py's family
    alone instead (its exit status); None without the flag."""
    if "--family" not in sys.argv[1:]:
        return None
    sys.argv.remove("--family")
    return family_main(doc, measure, render)


# -- labels ------------------------------------------------------------------------------------


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def tag() -> str:
    """The results' file name for this interpreter: ``cpython-3.12``, ``cpython-3.13t``."""
    v = sys.version_info
    return f"cpython-{v.major}.{v.minor}{'t' if FREE_THREADED else ''}"


def label(implementation: str | None = None) -> str:
    """Interpreter, GIL state, implementation and machine, for every table and chart."""
    ft = " free-threaded" if FREE_THREADED else ""
    if implementation is None:
        implementation = "compiled" if notipipe.COMPILED else "pure"
    return (
        f"CPython {platform.python_version()}{ft}, GIL {'on' if gil_enabled() else 'off'}, "
        f"notipipe {implementation}, "
        f"{platform.machine()} x{os.cpu_count()} ({platform.system()})"
    )
