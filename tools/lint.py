"""Lint and types: ruff, mypy --strict, stubtest, basedpyright on a user-style file,
pyright's type completeness of the installed package (every public name's type known), and the
GitHub workflows: check-jsonschema's schema (GitHub rejects a workflow that fails it) and zizmor;
the API reference's strict build (``tools/docs.py``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tools import docs
from tools.console import Summary, heading
from tools.interpreters import first_gil_python
from tools.venvs import ROOT, VENVS, bin_path, python_in, setup_venv, test_groups

COMPILED_MODULES = (
    "notipipe._batch_c",
    "notipipe._chunk_c",
    "notipipe._copy_c",
    "notipipe._kinds_c",
    "notipipe._messages_c",
    "notipipe._publisher_c",
    "notipipe._sqlite_c",
)
GITHUB = ROOT / ".github"
WORKFLOWS = GITHUB / "workflows"


def stubtest_command(python: Path, allowlist: Path, mypy_config: Path) -> list[str]:
    """stubtest of the compiled modules against their stubs, with the interpreter that imports them."""
    return [
        str(python),
        "-m",
        "mypy.stubtest",
        "--allowlist",
        str(allowlist),
        "--mypy-config-file",
        str(mypy_config),
        *COMPILED_MODULES,
    ]


def workflow_files(folder: Path = WORKFLOWS) -> list[Path]:
    """Every workflow file GitHub reads from ``folder`` (``*.yml`` and ``*.yaml``)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml"))


def workflow_schema_command(venv: Path, files: Sequence[Path]) -> list[str]:
    """check-jsonschema against its bundled copy of the GitHub-workflows schema (no network)."""
    return [
        str(bin_path(venv, "check-jsonschema")),
        "--builtin-schema",
        "vendor.github-workflows",
        *(str(f.relative_to(ROOT)) for f in files),
    ]


def zizmor_command(venv: Path) -> list[str]:
    """zizmor's offline audits of ``.github/`` (its configuration: ``.github/zizmor.yml``, if any);
    --strict-collection fails on a file it cannot parse instead of skipping it with a warning."""
    zizmor = str(bin_path(venv, "zizmor"))
    return [zizmor, "--offline", "--strict-collection", "--no-progress", str(GITHUB.relative_to(ROOT))]


def lint_venv() -> Path:
    """The linters' venv: the first GIL interpreter's test venv (mypy has no free-threaded wheel)."""
    return VENVS / first_gil_python().tag


def prepare() -> Path:
    it = first_gil_python()
    venv = lint_venv()
    heading(f"{it.tag}: setting up {venv.relative_to(ROOT)} for lint ({it.path})")
    if not setup_venv(it, venv, [*test_groups(it), "lint"]):
        raise SystemExit(f"could not set up {venv}")
    return venv


def run(summary: Summary, venv: Path) -> None:
    heading(f"lint and types ({venv.relative_to(ROOT)})")
    workflows = workflow_files()
    checks: Sequence[tuple[str, list[str]]] = [
        ("ruff check", [str(bin_path(venv, "ruff")), "check", "."]),
        ("ruff format --check", [str(bin_path(venv, "ruff")), "format", "--check", "."]),
        (
            "mypy --strict (pyproject's files)",
            [str(bin_path(venv, "mypy")), "--cache-dir", str(VENVS / ".mypy_cache")],
        ),
        (
            "stubtest (compiled modules vs stubs)",
            stubtest_command(python_in(venv), Path("stubs/stubtest-allowlist.txt"), Path("pyproject.toml")),
        ),
        (
            "basedpyright (user code)",
            [
                str(bin_path(venv, "basedpyright")),
                "--pythonpath",
                str(python_in(venv)),
                "tests/typing/user_code.py",
            ],
        ),
        ("check-jsonschema (.github/workflows, GitHub's schema)", workflow_schema_command(venv, workflows)),
        ("zizmor --offline .github/", zizmor_command(venv)),
    ]
    for label, cmd in checks:
        heading(label)
        summary.add(subprocess.run(cmd, cwd=ROOT, check=False).returncode == 0, label)
    verify_types(summary, venv)
    docs.check(summary, venv)


def verify_types(summary: Summary, venv: Path) -> None:
    """``pyright --verifytypes``: it fails below 100 %; it finds the installed package through the
    venv it is told is active."""
    label = "pyright --verifytypes notipipe --ignoreexternal"
    heading(label)
    path = f"{bin_path(venv, 'python').parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": path}
    cmd = [str(bin_path(venv, "pyright")), "--verifytypes", "notipipe", "--ignoreexternal"]
    # Run outside the checkout: pyright would otherwise take src/ for the package.
    proc = subprocess.run(cmd, cwd=venv, env=env, capture_output=True, text=True, check=False)
    shown = [line for line in proc.stdout.splitlines() if "error" in line or "completeness score" in line]
    print("\n".join(shown) or proc.stdout[-2000:] + proc.stderr[-2000:])
    summary.add(proc.returncode == 0, label)
