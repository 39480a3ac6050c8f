"""The docs task: the API reference (``docs/reference/``, ``mkdocs.yml``) built with ``--strict``.

mkdocstrings reads notipipe's source (griffe, without importing it), so the docs venv
``.venv/docs`` holds the ``docs`` dependency group alone: no build of the checkout. A broken
cross-reference, a docstring griffe cannot read, or a name of ``notipipe.__all__`` missing from
the reference (``tools/mkdocs_hooks.py``) is a warning, and ``--strict`` makes it a failure. The
lint task runs the same build (:func:`check`), so the test task fails on a broken reference too.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.console import Summary, heading, say
from tools.interpreters import first_gil_python
from tools.venvs import ROOT, VENVS, dependency_group, make_venv, pip_install, python_in

CONFIG = ROOT / "mkdocs.yml"
VENV = VENVS / "docs"
SITE = VENVS / "site"


def build_command(python: Path, site_dir: Path, config: Path = CONFIG) -> list[str]:
    """``mkdocs build --strict`` of ``config`` into ``site_dir``, run from the checkout (the
    config names its hook and griffe extension by paths relative to it)."""
    return [
        str(python),
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--config-file",
        str(config),
        "--site-dir",
        str(site_dir),
    ]


def build(python: Path, site_dir: Path, config: Path = CONFIG) -> subprocess.CompletedProcess[str]:
    """The build, its warnings (mkdocs writes them to stderr) captured."""
    cmd = build_command(python, site_dir, config)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    """mkdocs' warnings (stderr) and its verdict (stdout), without its INFO lines."""
    lines = (done.stderr + done.stdout).splitlines()
    return "\n".join(line for line in lines if not line.startswith("INFO "))


def check(summary: Summary, venv: Path) -> None:
    """The strict build into a throwaway directory with ``venv``'s mkdocs (the lint task's)."""
    label = "mkdocs build --strict (the API reference, docs/reference/)"
    heading(label)
    with tempfile.TemporaryDirectory(prefix="notipipe-docs.") as site:
        done = build(python_in(venv), Path(site))
    print(_shown(done) or "built, no warnings")
    summary.add(done.returncode == 0, label)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s docs --", description="Build the API reference (strict) into a directory."
    )
    parser.add_argument(
        "--site-dir", type=Path, default=SITE, help=f"where the HTML goes (default {SITE.relative_to(ROOT)})"
    )
    args = parser.parse_args(argv)
    it = first_gil_python()
    heading(f"{it.tag}: {VENV.relative_to(ROOT)} with the docs dependency group")
    make_venv(it, VENV)
    if not pip_install(VENV, dependency_group("docs"), "pip install (docs group)"):
        return 1
    site = args.site_dir.resolve()
    heading(f"mkdocs build --strict into {site}")
    done = build(python_in(VENV), site)
    print(_shown(done))
    if done.returncode != 0:
        say("the API reference did not build: the warnings above are what --strict refused")
        return 1
    say(f"the API reference: {site / 'index.html'}")
    return 0
