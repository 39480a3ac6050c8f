"""Helpers shared by the benchmarks: timing by median of repeats, environment labels."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable

import notipipe


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


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def label(implementation: str | None = None) -> str:
    """Interpreter, GIL state, implementation and machine, for every table and chart."""
    ft = " free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    if implementation is None:
        implementation = "compiled" if notipipe.COMPILED else "pure"
    return (
        f"CPython {platform.python_version()}{ft}, GIL {'on' if gil_enabled() else 'off'}, "
        f"notipipe {implementation}, "
        f"{platform.machine()} x{os.cpu_count()} ({platform.system()})"
    )
