"""Find the interpreters notipipe is tested on.

GIL builds of CPython >= 3.12 come from ``$NOTIPIPE_PYTHONS`` (space-separated paths) or else
``python3.12``..``python3.14`` on PATH and pyenv's versions, one per minor version. The
free-threaded one (3.13t/3.14t) comes from ``$NOTIPIPE_FT_PYTHON``, ``python3.14t``/``python3.13t``
on PATH or in pyenv, or a tool named by ``$NOTIPIPE_FT_TOOL`` that prints its path.

``tasks.py`` imports this module under whatever ``python3`` the user has, so it keeps to syntax
that Python 3.8 can read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

MINORS = (12, 13, 14)

FT_HOWTO = """\
No free-threaded CPython (3.13t or 3.14t) was found, and none could be obtained here. Any of:
  uv python install 3.14t                      (then: export NOTIPIPE_FT_PYTHON=$(uv python find 3.14t))
  pyenv install 3.14t                          (pyenv puts python3.14t in its versions)
  the python.org installer (macOS, Windows): tick "free-threaded binaries"
  Debian, as root: `python3 tools/free_threaded.py` builds one from the python3.13 source
  package (it needs apt-get and a deb-src archive; the test task tries this itself)
then put python3.14t (or python3.13t) on PATH, or set NOTIPIPE_FT_PYTHON to its path, or
NOTIPIPE_FT_TOOL to a command that prints it.
To run the GIL legs alone:  python3 tasks.py tests-gil   (or: nox -s tests-gil)"""

NO_GIL_HOWTO = """\
No CPython >= 3.12 with the GIL was found (python3.12..3.14 on PATH, or pyenv's versions).
Install one (python.org, `pyenv install 3.12`, `uv python install 3.12`, or your system's
python3.12 package), or set NOTIPIPE_PYTHONS to its path (several: separated by spaces)."""

_PROBE = (
    "import json, sys, sysconfig; print(json.dumps([sys.implementation.name, list(sys.version_info[:2]),"
    " bool(sysconfig.get_config_var('Py_GIL_DISABLED'))]))"
)


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: Tuple[int, int]  # noqa: UP006
    free_threaded: bool

    @property
    def tag(self) -> str:
        """``3.12``, ``3.13t``: the name of its venvs."""
        return f"{self.version[0]}.{self.version[1]}{'t' if self.free_threaded else ''}"


def probe(path: str) -> Optional[Interpreter]:  # noqa: UP045
    """The interpreter at ``path`` if it is a CPython that runs (a pyenv shim may not)."""
    try:
        out = subprocess.run(
            [path, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        name, version, ft = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if name != "cpython":
        return None
    return Interpreter(path, (version[0], version[1]), bool(ft))


def _pyenv_pythons(exe_name: str) -> Iterator[str]:
    """``exe_name`` in each of pyenv's versions, newest first."""
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = Path(root) / "versions"
    if not versions.is_dir():
        return

    def version(p: Path) -> List[int]:  # noqa: UP006 - "3.13.10" after "3.13.9"
        return [int(n) for n in re.findall(r"\d+", p.name)]

    for d in sorted(versions.iterdir(), key=version, reverse=True):
        exe = d / "bin" / exe_name
        if exe.is_file() and os.access(exe, os.X_OK):
            yield str(exe)


def _candidates(names: List[str]) -> Iterator[str]:  # noqa: UP006
    for name in names:
        found = shutil.which(name)
        if found:
            yield found
        yield from _pyenv_pythons(name)


def gil_pythons() -> List[Interpreter]:  # noqa: UP006
    """Every GIL CPython >= 3.12 found, one per minor version, oldest first."""
    env = os.environ.get("NOTIPIPE_PYTHONS", "").split()
    # The running interpreter last: a python3 of 3.12+ is enough, under whatever name it has.
    paths = env or [*_candidates([f"python3.{m}" for m in MINORS]), sys.executable]
    found = {}
    for path in paths:
        it = probe(path)
        if it and it.version >= (3, 12) and not it.free_threaded and it.version not in found:
            found[it.version] = it
    return [found[v] for v in sorted(found)]


def _uv_pythons() -> Iterator[str]:
    """uv's managed free-threaded interpreters, when uv is on PATH."""
    uv = shutil.which("uv")
    if uv is None:
        return
    for version in ("3.14t", "3.13t"):
        try:
            out = subprocess.run(
                [uv, "python", "find", "--managed-python", version],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            yield out.stdout.strip()


def cache_dir() -> Path:
    """Where tools/free_threaded.py builds one: ``$NOTIPIPE_CACHE`` or the per-user cache."""
    given = os.environ.get("NOTIPIPE_CACHE")
    if given:
        return Path(given).resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")).resolve() / "notipipe"


def built_ft_prefix(tsan: bool = False) -> Path:
    """The prefix tools/free_threaded.py installs its build into (``bin/python3.13t`` there)."""
    return cache_dir() / ("cpython-3.13t-tsan" if tsan else "cpython-3.13t")


def ft_python() -> Optional[Interpreter]:  # noqa: UP045
    """A free-threaded CPython that is already here, or None (``tools/free_threaded.py`` obtains
    one; FT_HOWTO says how to by hand). Looked for: ``$NOTIPIPE_FT_PYTHON``, python3.14t and
    python3.13t on PATH and in pyenv, uv's managed ones, an earlier build of
    tools/free_threaded.py, then ``$NOTIPIPE_FT_TOOL``'s answer."""
    paths = [os.environ.get("NOTIPIPE_FT_PYTHON", "")]
    paths += _candidates(["python3.14t", "python3.13t"])
    paths += _uv_pythons()
    paths.append(str(built_ft_prefix() / "bin" / "python3.13t"))
    for path in filter(None, paths):
        it = probe(path)
        if it and it.free_threaded:
            return it
    tool = os.environ.get("NOTIPIPE_FT_TOOL")
    if tool:
        # The tool may build the interpreter first (minutes): its progress goes to our stderr.
        proc = subprocess.run([tool], stdout=subprocess.PIPE, text=True, check=False)
        lines = proc.stdout.split()
        it = probe(lines[-1]) if proc.returncode == 0 and lines else None
        if it and it.free_threaded:
            return it
    return None


def first_gil_python() -> Interpreter:
    """The first GIL CPython >= 3.12, or SystemExit saying how to get one."""
    found = gil_pythons()
    if not found:
        raise SystemExit(NO_GIL_HOWTO)
    return found[0]
