#!/usr/bin/env python3
"""Run one of notipipe's tasks with nox, installing nox first if needed.

    python3 tasks.py run [ARGS]       build notipipe and run the demo
    python3 tasks.py test [ARGS]      the test task (the nox session `tests`)
    python3 tasks.py SESSION [ARGS]   any session of noxfile.py; with no SESSION, list them

Any ``python3`` will do: it finds a CPython >= 3.12 (this one, python3.12..3.14 on PATH, or
pyenv's versions), makes ``.venv/nox`` with it and installs nox there once. Written for old
interpreters too, since it may be the first thing a newcomer runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tools.interpreters import NO_GIL_HOWTO, gil_pythons  # noqa: E402 - after the path is set

ALIASES = {"test": "tests"}
VENV = ROOT / ".venv" / "nox"


def nox_command() -> list[str]:
    bindir = VENV / ("Scripts" if os.name == "nt" else "bin")
    nox = bindir / ("nox.exe" if os.name == "nt" else "nox")
    if nox.exists():
        return [str(nox)]
    found = gil_pythons()
    if not found:
        raise SystemExit(f"tasks.py: nox needs a Python >= 3.12.\n{NO_GIL_HOWTO}\nThen run this again.")
    print(f"tasks.py: installing nox into {VENV} (once) with {found[-1].path}", flush=True)
    subprocess.run([found[-1].path, "-m", "venv", str(VENV)], check=True)
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "nox"]
    proc = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stdout, file=sys.stderr)
        raise SystemExit(f"tasks.py: could not install nox into {VENV} (pip's output above)")
    return [str(nox)]


def main(argv: list[str]) -> int:
    nox = [*nox_command(), "-f", str(ROOT / "noxfile.py")]
    if not argv or argv[0] in ("-l", "--list", "-h", "--help"):
        print(__doc__)
        return subprocess.run([*nox, "-l"], check=False).returncode
    session = ALIASES.get(argv[0], argv[0])
    args = argv[2:] if argv[1:2] == ["--"] else argv[1:]  # `tasks.py bench -- --gil` as nox spells it
    return subprocess.run([*nox, "-s", session, "--", *args], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
