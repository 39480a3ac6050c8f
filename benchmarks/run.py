"""notipipe's benchmarks, as one command.

    python benchmarks/run.py [--quick] [--only NAME ...] [--out benchmarks/results]

Without ``--only``: the five families that make ``benchmarks/results`` (fanout, batches,
messages, end_to_end, scaling), on this interpreter, both twins (compiled and pure, imported
side by side) against the peers that are installed; writes ``<out>/<tag>.json``,
``<out>/<tag>.md`` (tables, ratios, target checks) and ``<out>/<tag>.png`` (chart), where
``<tag>`` names the interpreter. ``--only`` picks families and the standalone benchmarks
(async, batch_delivery, store, pg, pg_subscriber, nats, nats_subscriber, dashboard; each run as
its own process) and
prints their tables, writing nothing: a partial run is not a results file. ``--quick`` shrinks
every size (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_batch
import bench_fanout
import bench_messages
import bench_scaling
import bench_store
import report
from _common import FREE_THREADED, FULL, QUICK, Measure, Sizes, close_db, gil_enabled, label, tag, twins

HERE = Path(__file__).parent

# The families of results/<tag>.*: name -> (measure, its table).
FAMILIES: dict[str, tuple[Measure, Callable[[Any, dict[str, Any]], list[str]]]] = {
    "fanout": (bench_fanout.measure, report.fanout_table),
    "batches": (bench_batch.measure, report.batches_table),
    "messages": (bench_messages.measure, report.messages_table),
    "end_to_end": (bench_store.measure, report.end_to_end_table),
    "scaling": (bench_scaling.measure, report.scaling_table),
}

# The benchmarks that print their own tables: name -> (script, its arguments for --quick).
STANDALONE: dict[str, tuple[str, list[str]]] = {
    "async": (
        "bench_async.py",
        ["--messages", "2000", "--repeats", "1", "--seconds", "0.2", "--rate", "1000"],
    ),
    "batch_delivery": ("bench_batch.py", ["--batch", "100", "--batches", "5", "--repeats", "1"]),
    "store": ("bench_store.py", ["--alerts", "2000", "--repeats", "1"]),
    "pg": ("bench_pg.py", ["--alerts", "1000", "--repeats", "1"]),
    "pg_subscriber": ("bench_pg_subscriber.py", ["--alerts", "1000", "--writers", "1"]),
    "nats": ("bench_nats.py", ["--quick"]),
    "nats_subscriber": ("bench_nats_subscriber.py", ["--quick"]),
    "dashboard": ("bench_dashboard.py", ["--alerts", "2000"]),
}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_families(names: list[str], sizes: Sizes, total: int | None = None) -> dict[str, Any]:
    """Each family in turn on every twin: the results as results/<tag>.json holds them."""
    found = twins()
    results: dict[str, Any] = {
        "label": label(" and ".join(t.label for t in found)),
        "tag": tag(),
        "free_threaded": FREE_THREADED,
        "gil": gil_enabled(),
        "twins": [t.label for t in found],
        "quick": sizes is QUICK,
        "sizes": sizes.__dict__,
    }
    try:
        for i, name in enumerate(names, 1):
            progress(f"[{i}/{total or len(names)}] {name} ...")
            t0 = time.perf_counter()
            results[name] = FAMILIES[name][0](sizes, found)
            progress(f"      done in {time.perf_counter() - t0:.1f} s")
    finally:
        for twin in found:
            close_db(twin)
    return results


def run_standalone(names: list[str], quick: bool, done: int = 0, total: int | None = None) -> int:
    """Each benchmark as its own process, its tables on stdout: 1 if any failed."""
    failed = 0
    for i, name in enumerate(names, done + 1):
        script, small = STANDALONE[name]
        progress(f"[{i}/{total or len(names)}] {name}: {script} ...")
        t0 = time.perf_counter()
        status = subprocess.run([sys.executable, str(HERE / script), *(small if quick else [])], check=False)
        outcome = "done" if status.returncode == 0 else "FAILED"
        progress(f"      {outcome} in {time.perf_counter() - t0:.1f} s")
        failed += status.returncode != 0
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run notipipe's benchmarks on this interpreter.")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks that the benchmarks run, measures nothing"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=[*FAMILIES, *STANDALONE],
        help=f"run these alone and print their tables: {', '.join([*FAMILIES, *STANDALONE])}",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where to write the table and chart (full runs)"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.only:
        families = [n for n in args.only if n in FAMILIES]
        status = 0
        if families:
            results = run_families(families, sizes, total=len(args.only))
            for name in families:
                print("\n".join(FAMILIES[name][1](results[name], results["sizes"])))
        standalone = [n for n in args.only if n in STANDALONE]
        if standalone:
            status = run_standalone(standalone, args.quick, done=len(families), total=len(args.only))
        return status

    results = run_families(list(FAMILIES), sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{results['tag']}.json").write_text(json.dumps(results, indent=1))
    md, png = report.write_report(results, args.out)
    print(md.read_text())
    progress(f"wrote {md} and {png if png else '(no chart: matplotlib is not installed)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
