"""The test task: on each interpreter a venv with notipipe from the checkout, then its legs.

Legs per interpreter: the compiled twin (``NOTIPIPE_EXPECT_COMPILED=1``) and the pure one
(``NOTIPIPE_NO_EXTENSIONS=1``); on a free-threaded one also the compiled leg with each test run
in several threads at once (pytest-run-parallel). Then lint and types. No free-threaded
interpreter is a failure, never a silent skip: the GIL legs run, then the task says how to get one.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from tools import lint
from tools.console import Summary, heading, last_line, run_streamed, say, warn
from tools.interpreters import FT_HOWTO, NO_GIL_HOWTO, Interpreter, ft_python, gil_pythons, probe
from tools.venvs import ROOT, VENVS, python_in, setup_venv, test_groups

# More threads than this machine has cores, so that they are also preempted in the middle of an
# operation. Tests that share process-wide state stay in one thread: see tests/conftest.py.
PARALLEL_THREADS = 4

# The free-threaded venv has the plugin for the parallel leg; the other legs run without it, as
# they do where it is not installed.
_PYTEST = ("-m", "pytest", "-p", "no:cacheprovider")


def run_leg(
    summary: Summary, venv: Path, label: str, env: dict[str, str], pytest_args: Sequence[str]
) -> None:
    heading(label)
    log = VENVS / f"{re.sub(r'[^A-Za-z0-9.]+', '-', label)}.log"
    cmd: list[str | Path] = [python_in(venv), *_PYTEST, "-p", "no:run-parallel", "-q", *pytest_args]
    status = run_streamed(cmd, log, env=env)
    summary.add(status == 0, f"{label}: {last_line(log.read_text(errors='replace'))}")


def run_parallel_leg(summary: Summary, venv: Path, label: str, pytest_args: Sequence[str]) -> None:
    """The compiled leg with every test in PARALLEL_THREADS threads at once (pytest-run-parallel).

    -v makes the plugin mark each test PARALLEL PASSED and say why the others ran in one thread;
    that listing goes to the log, the terminal gets the failures and totals.
    """
    heading(label)
    log = VENVS / f"{venv.name}-parallel.log"
    cmd: list[str | Path] = [
        python_in(venv),
        *_PYTEST,
        "-v",
        f"--parallel-threads={PARALLEL_THREADS}",
        *pytest_args,
    ]
    status = run_streamed(
        cmd, log, env={"NOTIPIPE_EXPECT_COMPILED": "1"}, quiet=f"{label} (listing: {log.name})"
    )
    text = log.read_text(errors="replace")
    quiet = re.compile(r" (PARALLEL PASSED|PASSED|SKIPPED|XFAIL)( |$)|was not run in parallel: ")
    say("\n".join([line for line in text.splitlines() if not quiet.search(line)][-40:]))
    parallel = text.count(" PARALLEL PASSED ")
    single = text.count("was not run in parallel: ")
    summary.add(
        status == 0,
        f"{label}: {parallel} passed in {PARALLEL_THREADS} threads at once, {single} in one thread;"
        f" {last_line(text)} (listing: {log.relative_to(ROOT)})",
    )


def run_interpreter(
    summary: Summary, it: Interpreter, pytest_args: Sequence[str], *, lint_tools: bool
) -> None:
    venv = VENVS / it.tag
    heading(f"{it.tag}: setting up {venv.relative_to(ROOT)} ({it.path})")
    # With the linters (mypy, basedpyright) in the venv, tests/test_typing.py runs rather than skips.
    groups = [*test_groups(it), *(["lint"] if lint_tools else [])]
    if not summary.add(setup_venv(it, venv, groups), f"{it.tag}: venv with notipipe from the checkout"):
        return
    run_leg(summary, venv, f"{it.tag} compiled", {"NOTIPIPE_EXPECT_COMPILED": "1"}, pytest_args)
    run_leg(
        summary,
        venv,
        f"{it.tag} pure (NOTIPIPE_NO_EXTENSIONS=1)",
        {"NOTIPIPE_NO_EXTENSIONS": "1"},
        pytest_args,
    )
    if it.free_threaded:
        # It covers both twins: the suite runs every behaviour on both classes (the impl fixture).
        run_parallel_leg(
            summary, venv, f"{it.tag} compiled, {PARALLEL_THREADS} threads per test", pytest_args
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s tests --",
        description="The suite on every interpreter, both twins (free-threaded: also in parallel); lint.",
        epilog="Other arguments go to pytest (e.g. -k singleton).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="the first GIL interpreter only, then lint")
    which.add_argument("--gil", action="store_true", help="every GIL interpreter, no free-threaded one")
    which.add_argument(
        "--interpreter",
        metavar="PYTHON",
        help="this interpreter's legs only, no lint (what CI's matrix runs)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    summary = Summary()
    if args.interpreter:
        it = probe(args.interpreter)
        if it is None or it.version < (3, 12):
            raise SystemExit(f"{args.interpreter} is not a CPython >= 3.12")
        run_interpreter(summary, it, pytest_args, lint_tools=not it.free_threaded)
        summary.show()
        return 1 if summary.failed else 0

    gil = gil_pythons()
    if not gil:
        raise SystemExit(NO_GIL_HOWTO)
    legs: list[Interpreter] = gil[:1] if args.quick else gil
    ft = None
    if not (args.quick or args.gil):
        heading("finding a free-threaded interpreter")
        ft = ft_python()
        say(f"free-threaded: {ft.path}" if ft else "free-threaded: none found (its legs fail at the end)")
    for i, it in enumerate([*legs, *([ft] if ft else [])]):
        run_interpreter(summary, it, pytest_args, lint_tools=i == 0)
    lint.run(summary, VENVS / legs[0].tag)
    if not (args.quick or args.gil) and ft is None:
        summary.add(False, "free-threaded legs: no free-threaded interpreter (how to get one: below)")
    summary.show()
    if not (args.quick or args.gil) and ft is None:
        warn("\n" + FT_HOWTO)
    if summary.failed:
        return 1
    say("all legs passed")
    return 0
