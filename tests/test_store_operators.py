"""What an operator may do to a live SQLite database, and what the writer then does.

A schema change that refuses every row (here a trigger that raises) is the database's trouble,
not the alerts': they are kept, retried with backoff and reported as for a missing table, with
one log line when the trouble starts and one when it ends. A lone bad alert still costs only
itself.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from notipipe._errors import StorageError
from notipipe._storage.interface import StoreOptions
from notipipe._storage.sqlite.store import MessageStore
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="opens the DatabaseConnection singleton and captures the log"),
]

_TRIGGER = (
    "CREATE TRIGGER maintenance BEFORE INSERT ON messages"
    " BEGIN SELECT RAISE(ABORT, 'maintenance: no inserts'); END"
)


def _execute(path: Path, sql: str) -> None:
    """One statement from another tool, on a connection of its own."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(sql)
        conn.commit()


def _bodies(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [str(b) for (b,) in conn.execute("SELECT body FROM messages ORDER BY id")]


def _notipipe_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "notipipe" and r.levelno == level]


def test_a_trigger_refusing_every_row_keeps_the_alerts_and_retries(
    impl: Impl, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trigger.db"
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(path, max_delay=0.001, batch_size=10)
    try:
        db.save(impl.SMSMessage(body="before"), durable=True)
        _execute(path, _TRIGGER)
        during = [f"during {i}" for i in range(25)]
        db.save_many([impl.SMSMessage(body=b) for b in during])
        with pytest.raises(StorageError, match=r"refuses every row.*maintenance: no inserts") as error:
            db.flush(timeout=30)
        assert "retried" in error.value.reason
        assert db.pending_count == 25  # kept, not dropped
        _execute(path, "DROP TRIGGER maintenance")
        db.save(impl.SMSMessage(body="after"), durable=True)
    finally:
        db.close()
    assert _bodies(path) == ["before", *during, "after"]
    # One line as the trouble starts, one as it ends; none per alert.
    warnings = _notipipe_records(caplog, logging.WARNING)
    assert len([w for w in warnings if "cannot write to" in w]) == 1, warnings
    assert len([w for w in warnings if "writable again" in w]) == 1, warnings
    assert _notipipe_records(caplog, logging.ERROR) == []


def test_a_trigger_refusing_every_row_from_the_start_keeps_the_alerts(tmp_path: Path) -> None:
    # Whether the writer has stored anything or not, it asks with alerts of its own making.
    path = tmp_path / "first.db"
    store = MessageStore(str(path), lambda batch: [_row(str(b)) for b in batch], StoreOptions(max_delay=0))
    store.put("created")
    store.flush(timeout=30)
    store.close()
    _execute(path, _TRIGGER)
    store = MessageStore(str(path), lambda batch: [_row(str(b)) for b in batch], StoreOptions(max_delay=0))
    try:
        store.put_many(["a", "b"])
        with pytest.raises(StorageError, match="refuses every row"):
            store.flush(timeout=30)
        assert store.pending == 2
        _execute(path, "DROP TRIGGER maintenance")
        assert wait_until(lambda: store.pending == 0, 30)
        store.flush(timeout=30)
    finally:
        store.close()
    assert _bodies(path) == ["created", "a", "b"]


def _row(body: str) -> tuple[str, float, int, str, str, str]:
    return ("sms", 1.0, 3, "+15550000000", "", body)


def test_a_lone_bad_alert_in_a_batch_of_its_own_still_costs_only_itself(tmp_path: Path) -> None:
    # Every row of its batch is refused, but the writer's probe alerts go in: the alert is bad,
    # not the database.
    path = str(tmp_path / "lone.db")
    store = MessageStore(path, lambda batch: [_row(str(b)) for b in batch], StoreOptions(max_delay=0))
    try:
        store.put("ok 1")
        store.flush(timeout=30)
        store.put("bad \ud800")
        with pytest.raises(StorageError, match=r"1 alert\(s\) could not be stored.*surrogate"):
            store.flush(timeout=30)
        store.put("ok 2")
        store.flush(timeout=30)
    finally:
        store.close()
    assert _bodies(Path(path)) == ["ok 1", "ok 2"]


@pytest.mark.parametrize(
    ("first", "rule", "bad"),
    [
        # A DBA's de-duplication: the alert repeats one stored before (and so would any stored row).
        ("ok 1", "CREATE UNIQUE INDEX dedupe ON messages(address, body)", "ok 1"),
        # A rule about one kind: every SMS is refused (the last one stored too), e-mails are not.
        (
            "sms 0",
            "CREATE TRIGGER no_sms BEFORE INSERT ON messages WHEN NEW.kind = 'sms'"
            " BEGIN SELECT RAISE(ABORT, 'sms disabled'); END",
            "sms 1",
        ),
    ],
    ids=["unique-index", "kind-trigger"],
)
def test_a_rule_that_refuses_some_alerts_costs_only_those(
    tmp_path: Path, first: str, rule: str, bad: str
) -> None:
    # The batch is all refused alerts; the writer must not take that for "every row refused"
    # and hold the alerts behind it forever.
    path = tmp_path / "rule.db"

    def rows(batch: list[object]) -> list[tuple[str, float, int, str, str, str]]:
        return [
            ("sms", 1.0, 3, "+15550000000", "", str(b))
            if str(b).startswith("sms")
            else ("email", 1.0, 3, "a@example.com", "s", str(b))
            for b in batch
        ]

    store = MessageStore(str(path), rows, StoreOptions(max_delay=0))
    try:
        store.put(first)
        store.flush(timeout=30)
        _execute(path, rule)
        store.put(bad)
        with pytest.raises(StorageError, match=r"1 alert\(s\) could not be stored"):
            store.flush(timeout=30)
        store.put_many(["ok 2", "ok 3"])
        store.flush(timeout=30)
    finally:
        store.close()
    assert _bodies(path) == [first, "ok 2", "ok 3"]
