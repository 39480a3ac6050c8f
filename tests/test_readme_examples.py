"""Every Python example of the README runs as written, as a program of its own, and does what
its text says. The only change made to a block is the PostgreSQL URL, pointed at the test's
server; the blocks run in a child interpreter in an empty directory, without ``NOTIPIPE_DB``."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests._processes import kill, wait_until

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="runs child programs and the DatabaseConnection singleton"),
]

README = Path(__file__).resolve().parents[1] / "README.md"
PG_URL_IN_README = "postgresql://notipipe@db.internal/alerts"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_has_the_three_examples_these_tests_run() -> None:
    blocks = _blocks()
    assert len(blocks) == 3, "a README example was added or removed: run it here too"
    assert PG_URL_IN_README in blocks[2]


def test_the_quick_start_prints_the_alert_to_the_dashboard(tmp_path: Path) -> None:
    done = _run(_blocks()[0], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "dashboard: System Alert\n"


def test_storing_reading_and_an_async_observer_as_one_program(tmp_path: Path) -> None:
    quick_start, storing, _ = _blocks()
    done = _run(quick_start + storing, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "dashboard: System Alert"
    # The SMS is stored and counted; the e-mail reaches the async observer on its loop.
    assert "{'sms': 1}" in done.stdout
    assert "push pixel-7 disk 91% 2" in lines, done.stdout  # a registered kind, read back
    assert any(line.startswith("feed: ") and "disk 91%" in line for line in lines), done.stdout
    with closing(sqlite3.connect(tmp_path / "alerts.db")) as conn:
        rows = conn.execute("SELECT kind, body FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("sms", "db down")
    assert rows[1] == ("push", '{"v": 1, "fields": {"device": "pixel-7", "title": "disk 91%"}}')


def test_the_postgresql_subscriber_program_prints_what_another_process_commits(
    pg_url: str, tmp_path: Path
) -> None:
    program = _blocks()[2].replace(PG_URL_IN_README, pg_url)
    with subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            # subscribe() has fixed where the name starts once its cursor row exists.
            assert wait_until(lambda: _has_cursor(pg_url, "eu-dashboard") or child.poll() is not None, 60)
            assert child.poll() is None, child.communicate()[1]
            writer = _run(
                "from notipipe import DatabaseConnection, MessageFactory\n"
                f"db = DatabaseConnection({pg_url!r})\n"
                "sms = MessageFactory.create_message('sms', phone_number='+15551234567', body='pg alert')\n"
                "db.save(sms)\n"
                "db.close()\n",
                tmp_path,
            )
            assert writer.returncode == 0, writer.stderr
            assert child.stdout is not None
            line = child.stdout.readline()  # the program runs until stopped: its first delivery
            assert line.startswith("dashboard: "), line
            assert "pg alert" in line, line
        finally:
            kill(child, timeout=10)


def _has_cursor(url: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        try:
            row = conn.execute("SELECT 1 FROM notipipe_subscriptions WHERE name = %s", (name,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None
