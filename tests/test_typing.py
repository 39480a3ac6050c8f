"""The typing contract, checked by running mypy, pyright and basedpyright on user-style files.

Each file under tests/typing marks what the checker must say: ``# E: code`` for an error on that
line, ``# R: type`` for a revealed type. A file with no marks must check clean.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.typing

TYPING = Path(__file__).parent / "typing"
CASES = sorted(p.name for p in TYPING.glob("*.py"))
_MARK = re.compile(r"#\s*([ER]):\s*(\S+)")


def _expected(path: Path) -> set[tuple[int, str, str]]:
    marks = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = _MARK.search(line)
        if m:
            marks.add((lineno, m.group(1), m.group(2)))
    return marks


@pytest.mark.parametrize("case", CASES)
def test_mypy_strict(case: str, tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api", reason="mypy runs from the GIL interpreter's leg")
    path = TYPING / case
    stdout, stderr, _ = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path), "--show-error-codes", str(path)]
    )
    got = set()
    for line in stdout.splitlines():
        m = re.match(r".*?:(\d+): (error|note): (.*)", line)
        if not m:
            continue
        lineno, severity, text = int(m.group(1)), m.group(2), m.group(3)
        if severity == "note" and text.startswith("Revealed type is"):
            got.add((lineno, "R", text.split('"')[1]))
        elif severity == "error":
            got.add((lineno, "E", text.rsplit("[", 1)[1].rstrip("]")))
    assert got == _expected(path), stdout + stderr


def _pyright_expected(path: Path) -> set[tuple[int, str, str]]:
    """The marks as pyright words them: an error on each ``E`` line (its rules are not mypy's
    codes), each ``R`` type without its modules (pyright prints ``PushMessage``, not
    ``tests.typing.reveal_kinds.PushMessage``)."""
    return {
        (lineno, kind, re.sub(r"[\w.]+\.(\w+)", r"\1", what) if kind == "R" else "")
        for lineno, kind, what in _expected(path)
    }


@pytest.mark.parametrize("checker", ["pyright", "basedpyright"])
@pytest.mark.parametrize("case", CASES)
def test_pyright(checker: str, case: str) -> None:
    exe = shutil.which(checker) or str(Path(sys.executable).parent / checker)
    if not Path(exe).exists():
        pytest.skip(f"{checker} runs from the GIL interpreter's leg")
    path = TYPING / case
    out = subprocess.run(
        [exe, "--outputjson", "--pythonpath", sys.executable, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    got = set()
    for diagnostic in json.loads(out.stdout)["generalDiagnostics"]:
        lineno, text = diagnostic["range"]["start"]["line"] + 1, diagnostic["message"]
        if diagnostic["severity"] == "error":
            got.add((lineno, "E", ""))
        elif text.startswith("Type of "):
            got.add((lineno, "R", text.rsplit(' is "', 1)[1].removesuffix('"')))
        else:  # a warning or a note the file does not expect
            got.add((lineno, diagnostic["severity"], text))
    assert got == _pyright_expected(path), out.stdout + out.stderr
