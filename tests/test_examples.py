"""Every program in ``examples/`` runs as its top comment says, as a child process in an empty
directory, and prints what it shows; the PostgreSQL and NATS ones against the tests' servers,
their URL in ``NOTIPIPE_DB`` as the comment says. A new example needs its test here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="runs child programs"),
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTED = {
    "async_observer.py",
    "durable_postgresql.py",
    "factory.py",
    "follow.py",
    "kinds.py",
    "metrics.py",
    "nats_jetstream.py",
    "observers.py",
    "singleton.py",
    "store_sqlite.py",
}


@pytest.fixture(autouse=True)
def _shipped() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("examples/ is not shipped with the installed tests")


def _run(name: str, cwd: Path, db: str | None = None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"}
    env["PYTHONUNBUFFERED"] = "1"
    if db is not None:
        env["NOTIPIPE_DB"] = db
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert list(cwd.iterdir()) == [], "an example left files where it ran"
    return done.stdout.splitlines()


def test_every_example_has_a_test_and_says_how_to_run_it() -> None:
    programs = {p.name for p in EXAMPLES.iterdir() if p.suffix == ".py"}
    assert programs == TESTED
    for name in programs:
        server = name in {"durable_postgresql.py", "nats_jetstream.py"}
        run = f"Run: ``{'NOTIPIPE_DB=' if server else ''}"
        assert run in (EXAMPLES / name).read_text(encoding="utf-8"), name
        assert f"python examples/{name}" in (EXAMPLES / name).read_text(encoding="utf-8"), name


def test_singleton(tmp_path: Path) -> None:
    assert _run("singleton.py", tmp_path) == [
        "32 DatabaseConnection() from 8 threads, distinct objects: 1",
        "Settings() is Settings(): True",
        "Settings instance exists: True",
        "after reset_instance, exists: False",
    ]


def test_factory(tmp_path: Path) -> None:
    out = _run("factory.py", tmp_path)
    assert out[:5] == [
        "email: ops@example.com disk 91% priority 4",
        "sms: +15551234567 db down priority 5",
        "is an EmailMessage: True | has __dict__: False",
        "fields_of(sms): {'phone_number': '+15551234567', 'body': 'db down'}",
        "frozen: cannot assign to field 'subject'",
    ]
    assert out[5].startswith("refused: SMSMessage.body: ")
    assert out[5].endswith("is 161 characters, the limit is 160")
    assert out[6].startswith("unknown kind: unknown message type 'fax'")
    assert len(out) == 7


def test_observers(tmp_path: Path) -> None:
    assert _run("observers.py", tmp_path) == [
        "subscribed: True True",
        "again: False",
        "dashboard: System Alert",
        "error_handler: Broken failed on 'System Alert': observer bug",
        "failures so far: 1",
        "error_handler: Broken failed on 'nobody but Broken hears this': observer bug",
        "dashboard: a",
        "dashboard: b",
        "delivered by notify_many: 2",
    ]


def test_async_observer(tmp_path: Path) -> None:
    assert _run("async_observer.py", tmp_path) == [
        "feed on the loop's thread=True: alert 0",
        "feed on the loop's thread=True: alert 1",
        "feed on the loop's thread=True: alert 2",
        "received in order: True",
    ]


def test_store_sqlite(tmp_path: Path) -> None:
    assert _run("store_sqlite.py", tmp_path) == [
        "target: sqlite",
        "save_many accepted: 2",
        "count_by_kind: {'email': 2, 'sms': 1}",
        "last 2: [(2, 'email'), (3, 'email')]",
        "stats: total 3 by kind {'email': 2, 'sms': 1}",
    ]


def test_metrics(tmp_path: Path) -> None:
    assert _run("metrics.py", tmp_path) == [
        "saved 10 committed 10 pending 0",
        "refused {'invalid': 0, 'closed': 0, 'failing': 0, 'database': 0}",
        "batches timed True",
        "observers [('__main__.Pager#0', 10)]",
        "notipipe_alerts_saved_total 10.0",
        'notipipe_observer_failures_total{observer="__main__.Pager#0"} 10.0',
        "notipipe.alerts.committed [10]",
    ]


def test_kinds(tmp_path: Path) -> None:
    assert _run("kinds.py", tmp_path) == [
        "saved: push pixel-7 disk 91% 3 priority 4",
        "read:  PushMessage pixel-7 disk 91% 3 priority 4",
        "stored id: 1 same fields: True",
        "count_by_kind: {'push': 1}",
    ]


def test_follow(tmp_path: Path) -> None:
    assert _run("follow.py", tmp_path) == [
        *(f"followed id={n + 1}: job {n} done" for n in range(5)),
        "writer exit status: 0",
    ]


def test_durable_postgresql(pg_url: str, tmp_path: Path) -> None:
    out = _run("durable_postgresql.py", tmp_path, db=pg_url)
    assert out[0] == "target: postgresql | keeps durable names: True"
    # str(message) of an SMSMessage ends with its body.
    assert [
        line.startswith("durable: ") and line.endswith(f"replica {n} lagging")
        for n, line in enumerate(out[1:4])
    ] == [True] * 3
    assert out[4] == "all delivered: True | ids ascending: True"
    assert out[5].startswith("subscriptions: ['example-")
    assert len(out) == 6


def test_nats_jetstream(nats_url: str, tmp_path: Path) -> None:
    out = _run("nats_jetstream.py", tmp_path, db=nats_url)
    assert out[0] == "target: nats"
    # The consumer's thread prints while the main one flushes: the lines interleave.
    assert sorted(out[1:5]) == sorted(["stored: 3", *(f"durable consumer: node {n} down" for n in range(3))])
    assert out[-1] == "all delivered: True | in save order: ['node 0 down', 'node 1 down', 'node 2 down']"
