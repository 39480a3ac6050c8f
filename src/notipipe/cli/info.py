"""``notipipe info``: what this installation is."""

from __future__ import annotations

import argparse
import sqlite3
import sys

import notipipe
from notipipe.cli._common import EXIT_OK, ft_build, gil_enabled


def cmd_info(_: argparse.Namespace) -> int:
    """``notipipe info``: print the version, the twin in use, the interpreter, the GIL, SQLite."""
    print(f"notipipe {notipipe.__version__}")
    print(f"implementation: {'compiled (Cython)' if notipipe.COMPILED else 'pure Python'}")
    print(f"python: {sys.implementation.name} {sys.version.split()[0]} ({sys.executable})")
    print(f"free-threaded build: {'yes' if ft_build() else 'no'}")
    print(f"GIL enabled: {'yes' if gil_enabled() else 'no'}")
    print(f"sqlite: {sqlite3.sqlite_version}")
    return EXIT_OK
