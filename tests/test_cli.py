"""The notipipe command: every subcommand, exit codes, one-line errors, and crash safety."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import notipipe

pytestmark = pytest.mark.thread_unsafe(reason="only waits on child processes: copies add load, not coverage")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("NOTIPIPE_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "notipipe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, pattern: str) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_run_stores_alerts_and_prints_a_summary(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    result = run_cli("run", "--alerts", "5000", "--threads", "3", "--db", str(db), "--mix", "email=1,sms=1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "progress: 5,000/5,000 alerts, durable 5,000" in out
    assert re.search(r"alerts stored \(this run\)\s+│ 5,000", out), out
    assert re.search(r"throughput\s+│ [\d,]+ alerts/s", out)
    assert (
        f"implementation                 │ {'compiled (Cython)' if notipipe.COMPILED else 'pure Python'}"
        in out
    )
    assert "observer failures              │ 0" in out
    with sqlite3.connect(db) as conn:
        by_kind = dict(conn.execute("SELECT kind, count(*) FROM messages GROUP BY kind").fetchall())
    conn.close()
    assert sum(by_kind.values()) == 5000
    assert 2000 < by_kind["email"] < 3000  # an even mix
    m = re.search(r"per kind \(counter dashboard\)\s+│ email=([\d,]+), sms=([\d,]+)", out)
    assert m is not None
    assert (int(m[1].replace(",", "")), int(m[2].replace(",", ""))) == (by_kind["email"], by_kind["sms"])


def test_run_defaults_to_notipipe_db_in_the_current_directory(tmp_path: Path) -> None:
    result = run_cli("run", "--alerts", "100", "--progress", "none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "notipipe.db").exists()
    again = run_cli("run", "--alerts", "50", "--progress", "none", cwd=tmp_path)
    assert re.search(r"alerts stored \(database total\)\s+│ 150", again.stdout), again.stdout


def test_stats_and_tail(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    assert run_cli("run", "--alerts", "300", "--db", db, "--progress", "none").returncode == 0
    stats = run_cli("stats", "--db", db)
    assert stats.returncode == 0, stats.stderr
    assert "alerts: 300" in stats.stdout
    assert re.search(r"email: \d+", stats.stdout)
    assert "first: " in stats.stdout
    tail = run_cli("tail", "--db", db, "-n", "4")
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["#297", "#298", "#299", "#300"]


def test_info() -> None:
    result = run_cli("info")
    assert result.returncode == 0
    assert f"notipipe {notipipe.__version__}" in result.stdout
    assert ("compiled (Cython)" if notipipe.COMPILED else "pure Python") in result.stdout
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert f"GIL enabled: {'yes' if gil else 'no'}" in result.stdout
    assert f"sqlite: {sqlite3.sqlite_version}" in result.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["stats"], ["tail"], ["info"]])
def test_help_on_every_subcommand(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: notipipe")
    assert "--help" in result.stdout


def test_no_command_prints_help_and_fails() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "run" in result.stdout
    assert "stats" in result.stdout


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["run", "--alerts", "-5"], r"notipipe run: error: argument --alerts/-n: -5 is negative"),
        (["run", "--alerts", "many"], r"'many' is not a whole number"),
        (["run", "--threads", "0"], r"argument --threads/-t: must be at least 1"),
        (["run", "--mix", "fax=1"], r"'fax=1': expected email=W or sms=W"),
        (["run", "--mix", "email=0,sms=0"], r"the weights add up to 0"),
        (["run", "--bogus"], r"notipipe: error: unrecognized arguments: --bogus"),
        (["tail", "-n", "-1"], r"notipipe tail: error: argument -n: -1 is negative"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(args: list[str], pattern: str, tmp_path: Path) -> None:
    _one_line_error(run_cli(*args, cwd=tmp_path), 2, pattern)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_databases_give_one_line_status_1_and_stay_unchanged(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite\n" * 100)
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    for command in (["run", "--alerts", "10"], ["stats"], ["tail"]):
        result = run_cli(*command, "--db", str(junk))
        _one_line_error(result, 1, rf"notipipe {command[0]}: error: .*junk\.db: not a SQLite database")
    assert hashlib.sha256(junk.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]
    _one_line_error(run_cli("run", "--db", str(tmp_path)), 1, r"is a directory")
    _one_line_error(run_cli("stats", "--db", str(tmp_path / "none.db")), 1, r"none\.db: no such database")
    assert not (tmp_path / "none.db").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")
def test_sigkill_mid_run_loses_no_alert_reported_durable(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    with subprocess.Popen(
        [sys.executable, "-m", "notipipe", "run", "--alerts", "50000000", "--threads", "2",
         "--db", str(db), "--progress", "lines", "--max-delay", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        reported = 0
        deadline = time.monotonic() + 60
        try:
            for line in proc.stdout:
                m = re.match(r"progress: [\d,]+/[\d,]+ alerts, durable ([\d,]+)", line)
                if m:
                    reported = int(m[1].replace(",", ""))
                if reported >= 30_000 or time.monotonic() > deadline:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert reported >= 30_000, "the run never reported durable alerts"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        ids = conn.execute("SELECT min(id), max(id) FROM messages").fetchone()
    finally:
        conn.close()
    assert stored >= reported
    assert ids == (1, stored)  # whole batches only: no gaps


def test_benchmark_suite_runs_on_a_tiny_size(tmp_path: Path) -> None:
    suite = Path(__file__).parent.parent / "benchmarks" / "suite.py"
    if not suite.exists():
        pytest.skip("benchmarks/ is not shipped with the installed tests")
    result = subprocess.run(
        [sys.executable, str(suite), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    md = next(tmp_path.glob("cpython-*.md")).read_text()
    assert "## Targets" in md
    assert "plain loop over bound update (baseline)" in md
    assert "reference: same work, nothing shared" in md
    assert "T=2 / T=1 busy" in md  # the scaling table has both baselines
