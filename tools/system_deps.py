"""What the tests need from the system, installed where missing (Debian/Ubuntu, as root).

A PostgreSQL server (the tests start a throwaway cluster of their own) and its client library.
Anywhere else the task only checks, and says what to install. A new need is one more entry in
``NEEDS``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence

from tools.console import run_quiet, say, warn


def _has_initdb() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or shutil.which("initdb") is not None


def _has_libpq() -> bool:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return "libpq.so.5" in out


# (Debian package, is it present?)
NEEDS: Sequence[tuple[str, Callable[[], bool]]] = [
    ("postgresql", _has_initdb),
    ("libpq5", _has_libpq),
]


def can_apt() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str]) -> bool:
    """Install Debian packages, as root with apt-get; elsewhere say what to install."""
    if not can_apt():
        names = " ".join(packages)
        warn(f"missing {names}: install them (Debian/Ubuntu: apt-get install {names})")
        return False
    say(f"installing {' '.join(packages)} (apt-get)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    return run_quiet(["apt-get", "update", "-qq"], "apt-get update", env=env) and run_quiet(
        ["apt-get", "install", "-y", "-qq", *packages], f"apt-get install {' '.join(packages)}", env=env
    )


def main(argv: Sequence[str] = ()) -> int:
    missing = [package for package, present in NEEDS if not present()]
    if not missing:
        say("system-deps: all present")
        return 0
    return 0 if apt_install(missing) else 1
