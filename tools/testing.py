"""The test task: build once, install the built wheels, run each leg where it can differ; lint.

1. Interpreters: every GIL CPython >= 3.12 found and a free-threaded one; when none is here,
   ``tools/free_threaded.py`` obtains one (an installer, else a build from source, cached).
2. Build once (``tools/build.py``): the sdist from a snapshot of the checkout, and from the sdist
   one repaired wheel per interpreter. Each interpreter's venv ``.venv/<tag>`` gets its wheel.
3. The legs. Each test has one marker that says what it exercises (pyproject.toml, conftest.py):

   ======================  =====================  ===========================================
   leg                     markers                why there
   ======================  =====================  ===========================================
   every interpreter,      twin                   the message and publisher twins are what
   compiled and pure                              differs by interpreter and by twin
   the first GIL and the   twin, system           storage, CLI, dashboard and servers run the
   free-threaded one,      (+ typing on the GIL)  same Python code on every GIL minor version;
   compiled; the first                            both twins still run through ``impl``, and
   GIL pure too            (+ docs on the GIL)    the CLI's children by the switch, pure too
   free-threaded, compiled twin                   each test in several threads at once
   in parallel
   ======================  =====================  ===========================================

   Tests are spread over the machine's cores (pytest-xdist; the parallel leg by its threads),
   each leg's output also in ``.venv/<leg>.log``.
4. The artifact checks (``tools/wheels.py``): contents, twine, check-wheel-contents, auditwheel,
   cibuildwheel's configuration; each wheel imported from its venv (the free-threaded one with
   the GIL left off). Then lint and types.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import lint, wheels
from tools.build import Built, build_all, install_wheel
from tools.console import Summary, heading, last_line, run_streamed, say
from tools.free_threaded import find_or_obtain
from tools.interpreters import NO_GIL_HOWTO, Interpreter, gil_pythons, probe
from tools.locks import locked
from tools.venvs import ROOT, VENVS, WORKERS, make_venv, python_in, test_groups

# More threads than this machine has cores, so that they are also preempted in the middle of an
# operation. Tests that share process-wide state stay in one thread: see tests/conftest.py.
PARALLEL_THREADS = 4
# A leg takes minutes; one still running after this has a test hung in a way pytest-timeout could
# not end (a worker stuck in C, a child holding the output): killed, so the run reports it and goes on.
LEG_DEADLINE = 20 * 60
COMPILED = {"NOTIPIPE_EXPECT_COMPILED": "1"}
PURE = {"NOTIPIPE_NO_EXTENSIONS": "1"}


@dataclass(frozen=True)
class Leg:
    """One pytest run: the tests of ``markers`` with the twin ``env`` selects."""

    name: str
    markers: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    threads: int = 0  # pytest-run-parallel's threads per test; 0: the plugin is off


def legs_for(it: Interpreter, *, system: bool, typing: bool) -> list[Leg]:
    """``it``'s legs: see the table in this module's docstring."""
    # The docs tests build the API reference with the linters' venv (the lint group includes docs).
    compiled = ("twin", *(["system"] if system else []), *(["typing", "docs"] if typing else []))
    # The system tests that run notipipe as users do (the CLI, the dashboard, child programs)
    # take the twin from NOTIPIPE_NO_EXTENSIONS, not from ``impl``: they run pure on the GIL.
    pure = ("twin", *(["system"] if system and not it.free_threaded else []))
    legs = [Leg("compiled", compiled, COMPILED), Leg("pure", pure, PURE)]
    if it.free_threaded:
        legs.append(
            Leg(f"compiled, {PARALLEL_THREADS} threads per test", ("twin",), COMPILED, PARALLEL_THREADS)
        )
    return legs


def run_leg(summary: Summary, venv: Path, label: str, leg: Leg, pytest_args: Sequence[str]) -> None:
    heading(f"{label}: -m '{' or '.join(leg.markers)}'")
    log = VENVS / f"{re.sub(r'[^A-Za-z0-9.]+', '-', label)}.log"
    cmd: list[str | Path] = [
        python_in(venv),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        " or ".join(leg.markers),
    ]
    if not leg.threads:
        cmd += ["-n", str(WORKERS), "-p", "no:run-parallel", "-q", *pytest_args]
        status = run_streamed(cmd, log, env=leg.env, cwd=ROOT, deadline=LEG_DEADLINE)
        summary.add(
            status == 0 or _none_selected(status, pytest_args),
            f"{label}: {last_line(log.read_text(errors='replace'))}",
        )
        return
    # -v makes the plugin mark each test PARALLEL PASSED and say why the others ran in one thread;
    # that listing goes to the log, the terminal gets the failures and the totals. No xdist here:
    # the threads keep the cores busy, and the plugin's listing is lost in xdist's workers.
    cmd += ["-v", f"--parallel-threads={leg.threads}", *pytest_args]
    status = run_streamed(
        cmd, log, env=leg.env, cwd=ROOT, quiet=f"{label} (listing: {log.name})", deadline=LEG_DEADLINE
    )
    text = log.read_text(errors="replace")
    quiet = re.compile(r" (PARALLEL PASSED|PASSED|SKIPPED|XFAIL)( |$)|was not run in parallel: ")
    say("\n".join([line for line in text.splitlines() if not quiet.search(line)][-40:]))
    parallel = text.count("PARALLEL PASSED")
    single = text.count("was not run in parallel: ")
    # No test in several threads means the plugin did not run: a pass that checked nothing.
    summary.add(
        (status == 0 and parallel > 0) or _none_selected(status, pytest_args),
        f"{label}: {parallel} passed in {leg.threads} threads at once, {single} in one thread;"
        f" {last_line(text)} (listing: {log.relative_to(ROOT)})",
    )


def _none_selected(status: int, pytest_args: Sequence[str]) -> bool:
    """pytest's "no tests ran" where the user's own selection (``-k``, a file) picks nothing of
    this leg's markers: that leg has nothing to say, it has not failed."""
    return status == 5 and bool(pytest_args)


def install(summary: Summary, it: Interpreter, wheel: Path, *, lint_tools: bool) -> Path | None:
    """``.venv/<tag>`` with the leg's test packages (and the linters) and ``wheel``, probed."""
    venv = VENVS / it.tag
    heading(f"{it.tag}: {venv.relative_to(ROOT)} with {wheel.name}")
    make_venv(it, venv)
    # With the linters (mypy, basedpyright) in the venv, the typing tests run there.
    groups = [*test_groups(it), *(["lint"] if lint_tools else [])]
    ok = install_wheel(venv, wheel, groups) and wheels.probe(summary, venv, it.tag)
    return (
        venv
        if summary.add(ok, f"{it.tag}: the built wheel installed into {venv.relative_to(ROOT)}")
        else None
    )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s tests --",
        description="Build the wheels once, test them on each interpreter (legs by marker); lint.",
        epilog="Other arguments go to pytest (e.g. -k singleton).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="the first GIL interpreter only, then lint")
    which.add_argument("--gil", action="store_true", help="every GIL interpreter, no free-threaded one")
    which.add_argument(
        "--interpreter",
        metavar="PYTHON",
        help="this interpreter's legs only, system tests included; lint if it has the GIL (CI's matrix)",
    )
    parser.add_argument(
        "--twin-only", action="store_true", help="with --interpreter: its twin legs only (CI's other minors)"
    )
    args, pytest_args = parser.parse_known_args(argv)
    if args.twin_only and not args.interpreter:
        parser.error("--twin-only goes with --interpreter (one job of a CI matrix)")
    summary = Summary()
    if args.interpreter:
        one = probe(args.interpreter)
        if one is None or one.version < (3, 12):
            raise SystemExit(f"{args.interpreter} is not a CPython >= 3.12")
        interpreters = [one]
    else:
        gil = gil_pythons()
        if not gil:
            raise SystemExit(NO_GIL_HOWTO)
        interpreters = gil[:1] if args.quick else gil
        ft = None if args.quick or args.gil else find_or_obtain(summary)
        interpreters += [ft] if ft else []
    # System tests once on a GIL interpreter (the oldest: the standard library's oldest sqlite3
    # and asyncio) and once free-threaded; typing and lint where the linters install (a GIL one).
    first_gil = next((it for it in interpreters if not it.free_threaded), None)
    system = {it.tag for it in interpreters if it is first_gil or it.free_threaded}
    if args.twin_only:  # another job of the matrix runs the system tests, typing and lint
        system, first_gil = set(), None
    # One test task at a time per checkout: the venvs and the logs under .venv/ are shared.
    with (
        locked(VENVS / "test.lock", "test task in this checkout"),
        tempfile.TemporaryDirectory(prefix="notipipe-test.") as work,
    ):
        built = build_all(interpreters, Path(work), VENVS / "dist")
        if not summary.add(built is not None, "built once: the sdist, and from it a wheel per interpreter"):
            summary.show()
            return 1
        assert built is not None
        return _test(summary, built, interpreters, first_gil, system, pytest_args)


def _test(  # noqa: PLR0917 - the plan main() made, passed on as it is
    summary: Summary,
    built: Built,
    interpreters: Sequence[Interpreter],
    first_gil: Interpreter | None,
    system: set[str],
    pytest_args: Sequence[str],
) -> int:
    venvs: dict[str, Path] = {}
    for it in interpreters:
        venv = install(summary, it, built.wheels[it.tag], lint_tools=it is first_gil)
        if venv is None:
            continue
        venvs[it.tag] = venv
        for leg in legs_for(it, system=it.tag in system, typing=it is first_gil):
            run_leg(summary, venv, f"{it.tag} {leg.name}", leg, pytest_args)
    wheels.check_artifacts(summary, built)
    if first_gil is not None and first_gil.tag in venvs:
        lint.run(summary, venvs[first_gil.tag])
    summary.show()
    if summary.failed:
        return 1
    say("all legs passed")
    return 0
