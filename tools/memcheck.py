"""Memory-safety check of the compiled twin: its tests run under valgrind's memcheck.

The tests are the ``twin`` ones (those that exercise the message and publisher code; not those
that fork a multi-threaded process, marked ``forks``), on the
compiled twin alone (``NOTIPIPE_TEST_TWINS=c``), with Hypothesis' ``memcheck`` profile (fewer
examples, no deadline), spread over the cores: valgrind follows pytest-xdist's workers.
notipipe is built from a snapshot of the checkout into ``.venv/memcheck-<version>`` with ``-O1
-g`` and Cython's free lists off (``-DCYTHON_USE_FREELISTS=0``), so every dead message goes back
to malloc; the tests run with ``PYTHONMALLOC=malloc``, so every Python object is a malloc block
of its own. valgrind then reports a read or write past the end of an object or after it was freed,
and reads of uninitialised memory. Any such error fails the run; each is printed with its stack,
marked when it passes through notipipe's extension modules; the whole report is in
``.venv/memcheck-<version>.log``. ``tools/valgrind-python.supp`` silences the interpreter's and
the C library's known noise. More valgrind options go in ``VALGRIND_OPTS``, which valgrind reads
itself (e.g. ``--track-origins=yes``). It takes several minutes. The reports, one per process,
are ``.venv/memcheck-<version>/valgrind-<pid>.log``.

On a free-threaded interpreter objects live in mimalloc's pages (``PYTHONMALLOC=malloc`` is
refused there), so valgrind does not see an access after a free or past an object's end inside
those pages; it still sees uninitialised values and accesses outside any allocation.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from tools.console import heading, run_streamed, say, warn
from tools.interpreters import FT_HOWTO, first_gil_python, ft_python
from tools.system_deps import apt_install
from tools.venvs import ROOT, VENVS, WORKERS, python_in, setup_venv, test_groups

# With no test named: every test of the twins (pytest -m twin) but those that fork a
# multi-threaded process, which valgrind does not reproduce faithfully (the test legs run them).
DEFAULT_TESTS = ("-m", "twin and not forks")
SUPPRESSIONS = Path(__file__).with_name("valgrind-python.supp")
# setuptools adds CFLAGS after the interpreter's own flags, so this -O1 wins over its -O3.
DEBUG_CFLAGS = "-O1 -g -fno-omit-frame-pointer -DCYTHON_USE_FREELISTS=0"
ERROR_KINDS = re.compile(
    r"^(Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param"
    r"|Mismatched free|Source and destination overlap|Argument .* of function|Process terminating"
    r"|Jump to the invalid address)"
)
# valgrind runs the tests many times slower than the test task does: a test's own limit (pyproject's
# pytest-timeout) and the whole run's are raised to match, and still end a hung run well inside CI's.
# A test's limit must end well before the run's, or a test hung late in the run is killed with the
# run and nothing says which it was. faulthandler's watchdog is a C thread: it prints every
# thread's stack even when the stuck one holds the GIL (pytest-timeout's thread method needs it).
TEST_TIMEOUT = 600
STACKS_AFTER = 300
DEADLINE = 45 * 60
OURS = re.compile(r"notipipe|_messages_c|_publisher_c")


def errors(report: str) -> Iterator[str]:
    """valgrind's errors: paragraphs of the report whose first line names a kind of error."""
    block: list[str] = []
    for raw in [*report.splitlines(), ""]:
        line = re.sub(r"^==\d+== ?", "", raw)
        if line:
            block.append(line)
            continue
        if block and ERROR_KINDS.match(block[0]):
            text = "\n".join(block)
            yield ("[in notipipe] " if OURS.search(text) else "[elsewhere] ") + text
        block = []


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s memcheck --", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ft", action="store_true", help="on the free-threaded interpreter (a weaker check)")
    parser.add_argument(
        "--as-shipped", action="store_true", help="the regular build (-O3, free lists) in .venv/<version>"
    )
    parser.epilog = f"Other arguments go to pytest; with no test file among them: {' '.join(DEFAULT_TESTS)}."
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help="pytest-xdist workers (default: %(default)s)"
    )
    args, options = parser.parse_known_args(argv)  # pytest's arguments, in their order
    if shutil.which("valgrind") is None and not apt_install(["valgrind"]):
        return 1
    it = ft_python() if args.ft else first_gil_python()
    if it is None:
        warn(FT_HOWTO.replace("tests-gil", "memcheck"))
        return 1
    if args.as_shipped:
        venv, logs, env = VENVS / it.tag, VENVS / f"memcheck-{it.tag}-as-shipped", None
    else:
        venv, logs = VENVS / f"memcheck-{it.tag}", VENVS / f"memcheck-{it.tag}"
        env = {"CFLAGS": DEBUG_CFLAGS}
    heading(f"notipipe from the checkout into {venv.relative_to(ROOT)}{'' if env else ' (regular build)'}")
    if not setup_venv(it, venv, test_groups(it), env=env):
        return 1
    run_env = {"NOTIPIPE_EXPECT_COMPILED": "1", "NOTIPIPE_TEST_TWINS": "c"}
    if not it.free_threaded:  # the free-threaded build only has mimalloc (see above)
        run_env["PYTHONMALLOC"] = "malloc"
    names_tests = any(not a.startswith("-") and (a.startswith("tests") or ".py" in a) for a in options)
    tests = options if names_tests else [*DEFAULT_TESTS, *options]
    shutil.rmtree(logs / "reports", ignore_errors=True)
    (logs / "reports").mkdir(parents=True)
    heading(f"pytest {' '.join(tests)} under valgrind ({it.tag}); reports: {logs.relative_to(ROOT)}/reports")
    valgrind = [
        "valgrind", "--tool=memcheck", "--error-exitcode=1", "--leak-check=no", "--num-callers=40",
        "--trace-children=yes", f"--suppressions={SUPPRESSIONS}",
        # valgrind runs one thread at a time; its default lock lets a thread that releases and
        # retakes it (a GIL handoff, a spin) starve the others for good. Ticket order instead.
        "--fair-sched=try",
        f"--log-file={logs}/reports/valgrind-%p.log",
    ]  # fmt: skip
    pytest = ["-X", "faulthandler", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:run-parallel", "-q"]
    pytest += ["--hypothesis-profile=memcheck", f"--timeout={TEST_TIMEOUT}", "--durations=10"]
    pytest += ["-o", f"faulthandler_timeout={STACKS_AFTER}"]
    workers = ["-n", str(args.workers)] if args.workers > 1 else []
    cmd = [*valgrind, str(python_in(venv)), *pytest, *workers, *tests]
    status = run_streamed(cmd, logs / "pytest.log", env=run_env, cwd=ROOT, deadline=DEADLINE)
    report = "\n".join(p.read_text(errors="replace") for p in sorted((logs / "reports").glob("*.log")))
    summaries = re.findall(r"ERROR SUMMARY: (\d+) errors", report)
    say(f"valgrind: {len(summaries)} processes followed, {sum(map(int, summaries))} errors in all")
    found = list(errors(report))
    if found:
        say("\n" + "\n\n".join(found))
        ours = sum(e.startswith("[in notipipe]") for e in found)
        say(f"memcheck: FAILED: {ours} of the errors above pass through notipipe's modules")
        return 1
    if status:
        say(f"memcheck: FAILED: the tests failed under valgrind (status {status})")
        return status
    say("memcheck: no memory errors")
    return 0
