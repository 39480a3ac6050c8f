"""notipipe's tasks. ``python3 tasks.py SESSION`` installs nox and runs one; ``nox -l`` lists them.

Every session manages its own venvs under ``.venv/`` (one per interpreter, found by
``tools/interpreters.py``, the free-threaded one by path), so none uses a nox-made venv.
Arguments after ``--`` go to the task (``nox -s tests -- --quick -k singleton``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

if sys.version_info < (3, 12):  # noqa: UP036 - nox may run on any Python
    raise SystemExit("notipipe's tasks need nox running on Python >= 3.12: use `python3 tasks.py`")

# nox imports this file by path: the tools package beside it is not importable otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tools import bench, demo, docs, lint, memcheck, system_deps, testing, wheels
from tools.console import Summary

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"


def _exit(session: nox.Session, status: int) -> None:
    if status:
        session.error(f"{session.name} failed")


@nox.session(name="tests", venv_backend="none")
def tests(session: nox.Session) -> None:
    """The suite on each GIL CPython >= 3.12 and a free-threaded one, both twins; then lint."""
    _exit(session, testing.main(session.posargs))


@nox.session(name="tests-gil", venv_backend="none")
def tests_gil(session: nox.Session) -> None:
    """The GIL legs alone (every GIL CPython >= 3.12 found), then lint."""
    _exit(session, testing.main(["--gil", *session.posargs]))


@nox.session(name="lint", venv_backend="none")
def lint_session(session: nox.Session) -> None:
    """ruff, mypy --strict, stubtest, basedpyright, pyright --verifytypes; workflows: schema, zizmor;
    the API reference's strict build."""
    summary = Summary()
    lint.run(summary, lint.prepare())
    summary.show()
    _exit(session, summary.failed)


@nox.session(name="docs", venv_backend="none")
def docs_session(session: nox.Session) -> None:
    """The API reference (mkdocs --strict) into .venv/site (-- --site-dir DIR); lint checks it too."""
    _exit(session, docs.main(session.posargs))


@nox.session(name="memcheck", venv_backend="none")
def memcheck_session(session: nox.Session) -> None:
    """The compiled twin's tests under valgrind (-- --help for the options)."""
    _exit(session, memcheck.main(session.posargs))


@nox.session(name="wheels", venv_backend="none")
def wheels_session(session: nox.Session) -> None:
    """Build the sdist and wheels once and check them as installed (the test task tests them; -- --help)."""
    _exit(session, wheels.main(session.posargs))


@nox.session(name="bench", venv_backend="none")
def bench_session(session: nox.Session) -> None:
    """The benchmarks on a GIL and the free-threaded CPython (-- --quick: a smoke run)."""
    _exit(session, bench.main(session.posargs))


@nox.session(name="run", venv_backend="none")
def run_session(session: nox.Session) -> None:
    """Build notipipe and run the demo, `notipipe run` (-- --ft, or any of its options)."""
    _exit(session, demo.main(session.posargs))


@nox.session(name="system-deps", venv_backend="none")
def system_deps_session(session: nox.Session) -> None:
    """What the tests need from the system (PostgreSQL, libpq, Chromium): apt-installed, else checked."""
    _exit(session, system_deps.main(session.posargs))
