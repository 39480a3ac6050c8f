"""What operators do to a live SQLite file, and what notipipe then does (issue 20, items 4-6).

* A retention job deletes the newest rows: ids still never go backwards, so a follower, ``tail
  --follow`` and a browser's ``Last-Event-ID`` miss nothing saved afterwards; a file of the
  previous layout is migrated in place, once, by one process, losing no row.
* A second name for the file (a hard link) is refused, with what to do about it.
* A row another tool wrote that is not an alert (priority 9, text that is not UTF-8) is reported
  once and skipped by every read; the alerts around it are read as before. A row of a kind this
  process has not registered (kind "fax") is read as a ``StoredAlert`` (issue 22).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from notipipe import StoredAlert
from notipipe._errors import StorageError
from notipipe._storage.sqlite.file import APPLICATION_ID, SCHEMA_VERSION
from tests._processes import kill, spawn, wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]

#: The table as notipipe made it before ids became AUTOINCREMENT (layout version 1), verbatim.
_V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY,  -- assigned in save order
    kind       TEXT    NOT NULL,     -- 'email' | 'sms'
    created_at REAL    NOT NULL,     -- Unix seconds
    priority   INTEGER NOT NULL,
    address    TEXT    NOT NULL,     -- e-mail recipient or E.164 phone number
    subject    TEXT    NOT NULL,     -- '' for SMS
    body       TEXT    NOT NULL
);
"""
_WEEK = 7 * 24 * 3600.0


@pytest.fixture
def path(impl: Impl, tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "alerts.db"
    drop(impl.DatabaseConnection)


def _sql(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection of its own (another tool: no notipipe), committed."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as conn:
        return conn.execute(sql, params).fetchall()


def _make_v1_file(path: Path, rows: int) -> None:
    """A file exactly as the previous notipipe made it, holding ``rows`` alerts (ids 1..rows)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_V1_SCHEMA)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=1")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES (?,?,?,?,?,?)",
            [("sms", 1000.0 + i, 3, "+15551234567", "", f"v1 {i}") for i in range(rows)],
        )
        conn.execute("COMMIT")


def _retention(path: Path) -> int:
    """The operator's nightly job: delete every alert older than a week (after a quiet week, all)."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as conn:
        return conn.execute("DELETE FROM messages WHERE created_at < ?", (time.time() - _WEEK,)).rowcount


class _Follower:
    """``db.follow(after_id)`` on a thread, collecting what it yields, until stopped."""

    def __init__(self, db: Any, after_id: int) -> None:
        self.seen: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._pages = db.follow(after_id, poll=0.01, stop=self._stop)
        self._thread = threading.Thread(target=self._run, name="follower")
        self._thread.start()

    def _run(self) -> None:
        try:
            for page in self._pages:
                self.seen.extend(page)
        except BaseException as error:  # noqa: BLE001 - re-raised by stop()
            self.errors.append(error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self.errors:
            raise self.errors[0]


# -- item 4: ids never go backwards ------------------------------------------------------------------


def test_ids_never_go_backwards_after_a_retention_job_deletes_the_newest_rows(impl: Impl, path: Path) -> None:
    db = impl.DatabaseConnection(path)
    db.save_many(
        [impl.SMSMessage(body=f"last week {i}", created_at=time.time() - 2 * _WEEK) for i in range(5)]
    )
    db.flush()
    resume_at = db.last(1)[-1].id  # where a follower, tail --follow, a browser's Last-Event-ID stand
    follower = _Follower(db, resume_at)
    try:
        assert _retention(path) == 5
        db.save_many([impl.SMSMessage(body=f"new {i}") for i in range(3)], durable=True)
        assert [m.body for m in db.after(resume_at)] == ["new 0", "new 1", "new 2"]
        assert wait_until(lambda: len(follower.seen) == 3, 10), f"the follower saw {follower.seen}"
    finally:
        follower.stop()
    assert [m.id for m in follower.seen] == [resume_at + 1, resume_at + 2, resume_at + 3]


def test_a_previous_layout_file_is_migrated_in_place_keeping_every_row_and_the_operators_additions(
    impl: Impl, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _make_v1_file(path, 10)
    # What a DBA may have added: an index for the retention job, an audit trigger, a view.
    _sql(path, "CREATE INDEX messages_by_time ON messages (created_at)")
    _sql(path, "CREATE TABLE audit (message_id INTEGER)")
    _sql(
        path,
        "CREATE TRIGGER audit_insert AFTER INSERT ON messages BEGIN INSERT INTO audit VALUES (NEW.id); END",
    )
    _sql(path, "CREATE VIEW urgent AS SELECT id FROM messages WHERE priority >= 4")
    before = _sql(path, "SELECT * FROM messages ORDER BY id")
    _sql(path, "DELETE FROM messages WHERE id > 7")  # the newest go before the upgrade: 8-10 are lost
    with caplog.at_level(logging.WARNING, "notipipe"):
        db = impl.DatabaseConnection(path)
        db.save(impl.SMSMessage(body="after the upgrade", priority=5), durable=True)
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _sql(path, "SELECT * FROM messages WHERE id <= 7 ORDER BY id") == before[:7]
    assert [r.getMessage() for r in caplog.records if "layout" in r.getMessage()] == [
        f"notipipe: {path}: migrated the file from layout 1 to layout {SCHEMA_VERSION} (ids never reused"
        " once deleted), 7 rows kept; older notipipe releases refuse the file from now on"
    ]
    assert {name for (name,) in _sql(path, "SELECT name FROM sqlite_master")} >= {
        "messages_by_time",
        "audit",
        "audit_insert",
        "urgent",
    }
    assert _sql(path, "SELECT id FROM urgent") == [(8,)]
    assert _sql(path, "SELECT message_id FROM audit") == [(8,)]
    # From now on a retention job cannot make ids go back.
    _sql(path, "DELETE FROM messages")
    db.save(impl.SMSMessage(body="after retention"), durable=True)
    assert [m.id for m in db.last(5)] == [9]
    assert _sql(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_migration_loses_no_row_another_tool_commits_meanwhile(impl: Impl, path: Path) -> None:
    _make_v1_file(path, 100_000)  # a copy that takes a while: the other tool commits around it
    raw = spawn(impl, "tests._operator_children", "insert_raw", str(path))
    try:
        assert raw.stdout is not None
        assert raw.stdout.readline().strip() == "ready"
        for _ in range(20):
            assert raw.stdout.readline().startswith("committed")
        db = impl.DatabaseConnection(path)
        db.save(impl.SMSMessage(body="migrated"), durable=True)
        assert wait_until(
            lambda: _sql(path, "SELECT count(*) FROM messages WHERE body = 'raw'")[0][0] > 40, 30
        )
    finally:
        kill(raw)
        out, _ = raw.communicate()
    acknowledged = [int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")]
    stored = {i for (i,) in _sql(path, "SELECT id FROM messages WHERE body = 'raw'")}
    assert acknowledged, out
    assert [i for i in acknowledged if i not in stored] == []
    assert _sql(path, "SELECT count(*) FROM messages WHERE body LIKE 'v1 %'") == [(100_000,)]
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_processes_opening_a_previous_layout_file_at_once_migrate_it_once(impl: Impl, path: Path) -> None:
    _make_v1_file(path, 100_000)
    start_at = time.time() + 3.0  # every child has started and imported notipipe by then
    children = [
        spawn(impl, "tests._operator_children", "open_and_save", str(path), str(start_at), "100")
        for _ in range(4)
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(out)
    migrations = [line for out in outputs for line in out.splitlines() if "migrated the file" in line]
    assert len(migrations) == 1, outputs
    assert [out.count("stored 100") for out in outputs] == [1, 1, 1, 1]
    assert _sql(path, "SELECT count(*), count(DISTINCT id) FROM messages") == [(100_400, 100_400)]
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_reader_of_a_previous_layout_file_reads_it_without_writing(impl: Impl, path: Path) -> None:
    _make_v1_file(path, 3)
    os.chmod(path, 0o444)
    try:
        db = impl.DatabaseConnection(path)
        assert [m.body for m in db.last(5)] == ["v1 0", "v1 1", "v1 2"]
    finally:
        os.chmod(path, 0o644)
    assert _sql(path, "PRAGMA user_version") == [(1,)]


def test_a_lock_held_during_the_migration_is_a_wait_not_a_failure(
    impl: Impl, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _make_v1_file(path, 3)
    caplog.set_level(logging.WARNING, "notipipe")
    other = sqlite3.connect(path, isolation_level=None)  # another writer, holding the lock
    try:
        other.execute("BEGIN IMMEDIATE")
        db = impl.DatabaseConnection(path, busy_timeout=0.5, max_delay=0.001)
        db.save(impl.SMSMessage(body="waited"))  # queued at once, not refused
        with pytest.raises(TimeoutError):
            db.flush(timeout=0.2)
        # Past busy_timeout the wait is logged, as for a locked database.
        assert wait_until(lambda: any("cannot write to" in r.getMessage() for r in caplog.records), 30)
        # Readers meanwhile read the file as it is, in its old layout.
        assert [m.body for m in db.last(5)] == ["v1 0", "v1 1", "v1 2"]
        assert _sql(path, "PRAGMA user_version") == [(1,)]
        other.execute("COMMIT")
        db.flush(timeout=30)
    finally:
        other.close()
    assert [m.body for m in db.last(5)] == ["v1 0", "v1 1", "v1 2", "waited"]
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert sum("migrated the file from layout 1" in r.getMessage() for r in caplog.records) == 1


# -- item 5: two names for one file ----------------------------------------------------------------

_TWO_NAMES = (
    r"has 2 names \(hard links\): SQLite keeps the -wal and -shm files beside each name, so processes"
    r" using different names would overwrite each other's alerts; keep one name and delete the others"
    r" \(find \S+ -xdev -samefile \S+ lists them\), or give each process a copy of its own"
)


def test_a_file_with_a_second_hard_link_is_refused_under_either_name(impl: Impl, path: Path) -> None:
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage(), durable=True)
    other = path.with_name("same.db")
    os.link(path, other)
    for name in (path, other):
        with pytest.raises(StorageError, match=_TWO_NAMES):
            impl.DatabaseConnection(name)
    assert not os.path.exists(str(other) + "-wal")


def test_a_link_made_after_opening_is_refused_by_the_first_read_and_the_first_write(
    impl: Impl, path: Path
) -> None:
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage(), durable=True)
    reader = impl.DatabaseConnection(path)  # checked here, one name then
    os.link(path, path.with_name("same.db"))
    with pytest.raises(StorageError, match=_TWO_NAMES):
        reader.last()
    reader.close()
    os.unlink(path.with_name("same.db"))
    writer = impl.DatabaseConnection(path)
    os.link(path, path.with_name("again.db"))
    with pytest.raises(StorageError, match=_TWO_NAMES):
        writer.save(impl.SMSMessage())


def test_a_creators_temporary_name_is_not_a_second_name(impl: Impl, path: Path) -> None:
    # Between linking a new file into place and removing its temporary name, a creator leaves the
    # file with two links for a moment; a process opening it then must not be refused.
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage(), durable=True)
    os.link(path, path.with_name(f".{path.name}.4242.123456789.new"))
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage(), durable=True)
        assert len(db.last(5)) == 2


# -- item 6: rows another tool wrote ---------------------------------------------------------------


def _insert_foreign_rows(path: Path) -> list[int]:
    """Rows no notipipe would write, as another tool might: their ids."""
    ids = []
    for values in (
        "('sms', 1.0, 9, '+15551234567', '', 'priority 9')",
        "('fax', 1.0, 3, '+15551234567', '', 'not a kind')",
        "('email', 1.0, 3, 'ops@example.com', CAST(x'ff' AS TEXT), 'subject not UTF-8')",
        "('sms', 'yesterday', 3, '+15551234567', '', 'created_at text')",
        "('sms', 1.0, 3, '+15551234567', '', x'00ff')",
    ):
        _sql(
            path, f"INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES {values}"
        )
        ids.append(_sql(path, "SELECT max(id) FROM messages")[0][0])
    return ids


def test_rows_another_tool_wrote_are_reported_once_and_skipped_by_every_read(
    impl: Impl, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = impl.DatabaseConnection(path)
    db.save_many([impl.SMSMessage(body=f"before {i}") for i in range(3)], durable=True)
    bad = _insert_foreign_rows(path)
    db.save_many([impl.SMSMessage(body=f"after {i}") for i in range(3)], durable=True)
    # The row of a kind this process has not registered is no error: a StoredAlert (issue 22).
    fax = StoredAlert(
        "fax",
        {"address": "+15551234567", "subject": "", "body": "not a kind"},
        created_at=1.0,
        id=bad.pop(1),
    )
    good = ["before 0", "before 1", "before 2", fax, "after 0", "after 1", "after 2"]
    with caplog.at_level(logging.ERROR, "notipipe"):
        assert [_body(m) for m in db.last(4)] == good[-4:]
        assert [_body(m) for m in db.last(100)] == good
        assert [_body(m) for m in db.after(0)] == good
        assert [_body(m) for m in db.after(0, 4)] == good[:4]  # a full page, the bad rows read past
        assert [_body(m) for m in db.after(bad[0] - 1, 1)] == [fax]
        follower = _Follower(db, 0)
        try:
            assert wait_until(lambda: len(follower.seen) == 7, 10), follower.seen
        finally:
            follower.stop()
        assert [_body(m) for m in follower.seen] == good
    reports = {}
    for record in caplog.records:
        text = record.getMessage()
        assert text.startswith(f"notipipe: {path}: skipped row id "), text
        row_id = int(text.split("skipped row id ")[1].split(":")[0])
        assert row_id not in reports, f"row {row_id} reported twice"
        reports[row_id] = text
    assert sorted(reports) == bad
    assert "not an alert notipipe can read (SMSMessage.priority: 9 is outside 1..5)" in reports[bad[0]]


def _body(message: Any) -> object:
    """An SMS's body; a StoredAlert as it is."""
    return message if isinstance(message, StoredAlert) else message.body


def test_a_follower_reads_past_rows_another_tool_wrote_at_the_end(impl: Impl, path: Path) -> None:
    db = impl.DatabaseConnection(path)
    db.save(impl.SMSMessage(body="first"), durable=True)
    _insert_foreign_rows(path)
    follower = _Follower(db, 0)
    try:
        db.save(impl.SMSMessage(body="second"), durable=True)
        assert wait_until(lambda: len(follower.seen) == 3, 10), follower.seen  # the fax row too
    finally:
        follower.stop()
    assert [_body(m) for m in follower.seen if not isinstance(m, StoredAlert)] == ["first", "second"]


def test_tail_skips_a_row_another_tool_wrote(impl: Impl, path: Path) -> None:
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage(body="readable"), durable=True)
    _insert_foreign_rows(path)
    tail = spawn(impl, "notipipe", "tail", "--db", str(path), "-n", "3")
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    assert "body='readable'" in out
    assert "fax   p3 address='+15551234567' subject='' body='not a kind'" in out  # a StoredAlert
    assert err.count("skipped row id") == 4, err
