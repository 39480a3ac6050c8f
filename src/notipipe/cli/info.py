"""``notipipe info``: what this installation is."""

from __future__ import annotations

import argparse
import sqlite3
import sys

import notipipe
from notipipe.cli._common import EXIT_OK, ft_build, gil_enabled
from notipipe.cli._json import print_json


def info_object() -> dict[str, object]:
    """``notipipe info --json``: the installation (docs/json.md)."""
    return {
        "version": notipipe.__version__,
        "compiled": notipipe.COMPILED,
        "python_implementation": sys.implementation.name,
        "python_version": sys.version.split()[0],
        "python_executable": sys.executable or None,
        "free_threaded_build": ft_build(),
        "gil_enabled": gil_enabled(),
        "sqlite_version": sqlite3.sqlite_version,
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``notipipe info``: print the version, the twin in use, the interpreter, the GIL, SQLite."""
    if args.json:
        print_json(info_object())
        return EXIT_OK
    print(f"notipipe {notipipe.__version__}")
    print(f"implementation: {'compiled (Cython)' if notipipe.COMPILED else 'pure Python'}")
    print(f"python: {sys.implementation.name} {sys.version.split()[0]} ({sys.executable})")
    print(f"free-threaded build: {'yes' if ft_build() else 'no'}")
    print(f"GIL enabled: {'yes' if gil_enabled() else 'no'}")
    print(f"sqlite: {sqlite3.sqlite_version}")
    return EXIT_OK
