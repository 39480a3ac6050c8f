"""The bench task: ``benchmarks/run.py`` (every family) on a GIL CPython and on the free-threaded one.

Each interpreter gets ``.venv/bench-<version>`` with notipipe from the checkout and the peers of
the ``bench`` dependency group, one at a time: a peer without a wheel there (msgspec on 3.13t)
is left out of its tables, not fatal.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tools.console import heading, say, warn
from tools.interpreters import FT_HOWTO, Interpreter, first_gil_python, ft_python
from tools.venvs import ROOT, VENVS, dependency_group, pip_install, python_in, setup_venv


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, tables in .venv/bench-quick/: checks that it runs"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--gil", action="store_true", help="only the GIL interpreter")
    which.add_argument("--ft", action="store_true", help="only the free-threaded interpreter")
    args = parser.parse_args(argv)
    pythons: list[Interpreter] = []
    if not args.ft:
        pythons.append(first_gil_python())
    if not args.gil:
        ft = ft_python()
        if ft is None:
            warn(FT_HOWTO.replace("tests-gil", "bench --gil"))
            return 1
        pythons.append(ft)
    for it in pythons:
        venv = VENVS / f"bench-{it.tag}"
        heading(f"{venv.name} ({it.path})")
        if not setup_venv(it, venv):
            return 1
        for peer in dependency_group("bench"):
            if not pip_install(venv, ["--only-binary=:all:", peer], f"installing {peer}", show_failure=False):
                say(f"bench: {peer} is not installable on {it.tag}; left out")
        suite: list[str | Path] = [
            python_in(venv),
            ROOT / "benchmarks" / "run.py",
            # A smoke run's figures mean nothing: they stay out of the committed results.
            *(["--quick", "--out", str(VENVS / "bench-quick")] if args.quick else []),
        ]
        if subprocess.run(suite, cwd=ROOT, check=False).returncode != 0:
            return 1
    return 0
