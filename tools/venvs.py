"""Venvs under ``.venv/``: notipipe installed from the checkout, plus a dependency group's tools.

The packages each venv gets are pyproject.toml's ``[dependency-groups]``, read here (so any pip
will do); :func:`test_groups` says which groups a test leg installs.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.console import run_quiet, say, warn
from tools.interpreters import Interpreter

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv"
PIP_FLAGS = ("--disable-pip-version-check", "--prefer-binary")
# pytest-xdist's worker processes for a test run: one per core.
WORKERS = max(1, os.cpu_count() or 1)


def dependency_group(name: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirements of one of ``pyproject``'s dependency groups (PEP 735, includes resolved)."""
    groups: dict[str, list[Any]] = tomllib.loads(pyproject.read_text())["dependency-groups"]
    out: list[str] = []
    for item in groups[name]:
        if isinstance(item, dict):
            out += dependency_group(item["include-group"], pyproject)
        else:
            out.append(item)
    return out


def test_groups(it: Interpreter) -> list[str]:
    """The dependency group of a test leg on ``it`` (each includes ``test``)."""
    return ["test-ft" if it.free_threaded else "test-gil"]


def bin_path(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def python_in(venv: Path) -> Path:
    return bin_path(venv, "python.exe" if os.name == "nt" else "python")


def pip_install(
    venv: Path,
    args: Sequence[str | Path],
    label: str,
    env: Mapping[str, str] | None = None,
    *,
    show_failure: bool = True,
) -> bool:
    cmd = [python_in(venv), "-m", "pip", "install", "-q", *PIP_FLAGS, *args]
    return run_quiet(cmd, label, env=env, show_failure=show_failure)


def _made_by(venv: Path) -> str | None:
    """The interpreter ``venv`` was made with (its ``pyvenv.cfg``), resolved; None if unknown."""
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        return None
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "executable":
            return str(Path(value.strip()).resolve())
    return None


def make_venv(it: Interpreter, venv: Path, *, fresh: bool = False) -> None:
    """``venv`` made with ``it``; made again if it was made with another interpreter (pyenv's
    3.12.1 replaced by 3.12.8, another NOTIPIPE_FT_PYTHON), so the legs run what they name."""
    stale = python_in(venv).exists() and _made_by(venv) not in (None, str(Path(it.path).resolve()))
    if stale:
        say(f"{venv} was made with another interpreter: making it again with {it.path}")
    if fresh or stale or not python_in(venv).exists():
        say(f"creating {venv} ({it.path})")
        subprocess.run([it.path, "-m", "venv", "--clear", venv], check=True)
        # An old pip from ensurepip still works: only a warning is lost when this cannot upgrade.
        subprocess.run(
            [python_in(venv), "-m", "pip", "install", "-q", *PIP_FLAGS, "--upgrade", "pip"],
            capture_output=True,
            check=False,
        )


def setup_venv(
    it: Interpreter,
    venv: Path,
    groups: Sequence[str] = (),
    *,
    extras: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> bool:
    """Make ``venv`` with ``groups``' packages and a wheel of this checkout (with its ``extras``),
    built in a private copy with ``env`` (tools/build.py): the checkout is never a build directory."""
    from tools.build import install_wheel, wheel_of_checkout

    make_venv(it, venv)
    say(f"building a wheel of the checkout for {it.tag} (compiling the extension)")
    with wheel_of_checkout(it, env) as wheel:
        if wheel is None or not install_wheel(venv, wheel, groups, extras):
            return False
    probe = subprocess.run([python_in(venv), "-c", "import notipipe"], cwd=VENVS, check=False)
    if probe.returncode != 0:
        warn(f"notipipe does not import in {venv}")
    return probe.returncode == 0
