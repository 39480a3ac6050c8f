"""The typing contract, checked by running mypy (and basedpyright) on user-style files.

Each file under tests/typing marks what the checker must say: ``# E: code`` for an error on that
line, ``# R: type`` for a revealed type. A file with no marks must check clean.
"""

from __future__ import annotations

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


def test_basedpyright_strict_on_user_code() -> None:
    exe = shutil.which("basedpyright") or str(Path(sys.executable).parent / "basedpyright")
    if not Path(exe).exists():
        pytest.skip("basedpyright runs from the GIL interpreter's leg")
    out = subprocess.run(
        [exe, "--pythonpath", sys.executable, str(TYPING / "user_code.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 errors, 0 warnings" in out.stdout, out.stdout
