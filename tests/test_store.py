"""DatabaseConnection storage: round trips, batching, durability, configuration, bad files."""

from __future__ import annotations

import hashlib
import inspect
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from notipipe._errors import ConfigurationError, StorageClosedError, StorageError
from notipipe._storage.sqlite.file import SCHEMA_VERSION
from notipipe._storage.sqlite.store import _insert_sql
from tests.conftest import Impl, drop
from tests.storm import fast_switching

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]


@pytest.fixture
def open_db(impl: Impl, tmp_path: Path) -> Iterator[Any]:
    """A factory: open this twin's DatabaseConnection on a file under tmp_path."""

    def make(name: str = "alerts.db", **options: Any) -> Any:
        return impl.DatabaseConnection(tmp_path / name, **options)

    yield make
    drop(impl.DatabaseConnection)


def _raw_count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn, conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def _digest(path: Path) -> tuple[str, list[str]]:
    files = sorted(p.name for p in path.parent.iterdir())
    return hashlib.sha256(path.read_bytes()).hexdigest(), files


def test_round_trip_of_both_kinds(impl: Impl, open_db: Any) -> None:
    db = open_db()
    email = impl.EmailMessage("ops@example.com", "disk 91%", "on host-3", priority=4, created_at=1000.5)
    sms = impl.SMSMessage("+15551234567", "db down", priority=5, created_at=1001.0)
    db.save(email)
    db.save(sms)
    got = db.last(10)
    assert [type(m) for m in got] == [impl.EmailMessage, impl.SMSMessage]
    assert got[0] == impl.EmailMessage(
        "ops@example.com", "disk 91%", "on host-3", priority=4, created_at=1000.5, id=1
    )
    assert got[1] == impl.SMSMessage("+15551234567", "db down", priority=5, created_at=1001.0, id=2)


def test_observers_see_saved_messages_in_order(impl: Impl, open_db: Any) -> None:
    db = open_db()
    seen: list[object] = []

    class Sink:
        def update(self, message: object) -> None:
            seen.append(message)

    db.subscribe(Sink())
    batch = [impl.SMSMessage(body=str(i)) for i in range(5)]
    db.save(batch[0])
    assert db.save_many(batch[1:]) == 4
    assert seen == batch
    db.notify_all("broadcast only")
    assert seen[-1] == "broadcast only"
    assert db.count_by_kind() == {"sms": 5}  # the broadcast-only text was not stored


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_batch_boundaries_keep_every_message_once_in_order(open_db: Any, impl: Impl, batch_size: int) -> None:
    db = open_db(batch_size=batch_size, max_delay=0.001)
    n = 1000
    for start in range(0, n, 93):  # chunks that straddle the batch size
        db.save_many([impl.SMSMessage(body=str(i)) for i in range(start, min(n, start + 93))])
    db.flush()
    got = db.after(0, limit=n + 10)
    assert [m.body for m in got] == [str(i) for i in range(n)]
    assert [m.id for m in got] == list(range(1, n + 1))


def test_flush_makes_messages_visible_to_another_connection(impl: Impl, open_db: Any, tmp_path: Path) -> None:
    db = open_db(max_delay=30)  # the writer would otherwise wait up to 30 s for a full batch
    db.save_many([impl.EmailMessage(body=str(i)) for i in range(10)])
    db.flush()
    assert db.pending_count == 0
    assert db.durable_count == 10
    assert _raw_count(tmp_path / "alerts.db") == 10
    db.save(impl.EmailMessage(body="x"), durable=True)
    assert _raw_count(tmp_path / "alerts.db") == 11


def test_close_flushes_and_later_use_is_a_clear_error(impl: Impl, open_db: Any, tmp_path: Path) -> None:
    db = open_db(max_delay=30)
    db.save_many([impl.SMSMessage() for _ in range(3)])
    db.close()
    assert db.closed
    assert _raw_count(tmp_path / "alerts.db") == 3
    with pytest.raises(StorageClosedError, match=r"alerts\.db: the database connection is closed"):
        db.save(impl.SMSMessage())
    with pytest.raises(StorageClosedError):
        db.last(1)
    db.close()  # idempotent
    fresh = impl.DatabaseConnection(tmp_path / "alerts.db")
    assert fresh is not db  # close() dropped the singleton
    assert fresh.count_by_kind() == {"sms": 3}


def test_context_manager_closes(impl: Impl, tmp_path: Path) -> None:
    with impl.DatabaseConnection(tmp_path / "ctx.db") as db:
        db.save(impl.EmailMessage())
    assert db.closed
    assert _raw_count(tmp_path / "ctx.db") == 1


def test_reading_api(impl: Impl, open_db: Any) -> None:
    db = open_db()
    db.save_many([impl.EmailMessage(body=str(i), created_at=100.0 + i) for i in range(6)])
    db.save_many([impl.SMSMessage(body=str(i), created_at=200.0 + i) for i in range(4)])
    assert db.count_by_kind() == {"email": 6, "sms": 4}
    assert [m.id for m in db.last(3)] == [8, 9, 10]
    assert db.last(0) == []
    assert [m.id for m in db.after(7)] == [8, 9, 10]
    assert [m.id for m in db.after(2, limit=2)] == [3, 4]
    stats = db.stats()
    assert (stats.total, stats.by_kind, stats.first_at, stats.last_at) == (
        10,
        {"email": 6, "sms": 4},
        100.0,
        203.0,
    )
    assert stats.size_bytes > 0
    with pytest.raises(ValueError, match="n must be a non-negative int, got -1"):
        db.last(-1)
    with pytest.raises(ValueError, match="limit must be a non-negative int"):
        db.after(0, limit=-5)


def test_only_messages_can_be_saved(impl: Impl, open_db: Any) -> None:
    db = open_db()
    with pytest.raises(
        TypeError, match="cannot store str 'text': expected EmailMessage, SMSMessage or a kind registered"
    ):
        db.save("text")
    with pytest.raises(TypeError, match="cannot store int"):
        db.save_many([impl.SMSMessage(), 3])
    assert db.count_by_kind() == {}  # the valid half of the bad batch was not stored either


def test_singleton_configuration_conflicts_are_errors(impl: Impl, open_db: Any, tmp_path: Path) -> None:
    db = open_db("a.db")
    assert impl.DatabaseConnection(tmp_path / "a.db") is db
    assert impl.DatabaseConnection(str(tmp_path / "a.db")) is db
    assert impl.DatabaseConnection() is db  # no arguments: the existing one
    with pytest.raises(
        ConfigurationError,
        match=r"already open with path='.*a\.db'.*close\(\) it before opening path='.*b\.db'",
    ):
        impl.DatabaseConnection(tmp_path / "b.db")
    with pytest.raises(ConfigurationError, match="synchronous=NORMAL"):
        impl.DatabaseConnection(tmp_path / "a.db", synchronous="FULL")


def test_the_same_options_spelled_differently_are_one_configuration(
    impl: Impl, open_db: Any, tmp_path: Path
) -> None:
    db = open_db("a.db", max_delay=1, busy_timeout=2)
    # Seconds as int or float, defaults spelled out or left out: the same configuration.
    assert impl.DatabaseConnection(tmp_path / "a.db", max_delay=1.0, busy_timeout=2.0) is db
    assert impl.DatabaseConnection(tmp_path / "a.db", max_delay=1, busy_timeout=2, batch_size=10_000) is db
    with pytest.raises(ConfigurationError) as conflict:
        impl.DatabaseConnection(tmp_path / "a.db", max_delay=1, busy_timeout=2, batch_size=5)
    # Every option is named, in the order of the signature, for both configurations.
    options = (
        "synchronous=NORMAL, batch_size={}, max_delay=1.0, deliver=immediate, busy_timeout=2.0, wal_limit={}"
    )
    assert options.format(10000, 64 * 2**20) in str(conflict.value)
    assert options.format(5, 64 * 2**20) in str(conflict.value)


def test_the_connection_signature_keeps_its_documented_defaults(impl: Impl) -> None:
    defaults = {
        name: p.default
        for name, p in inspect.signature(impl.DatabaseConnection.__init__).parameters.items()
        if name != "self"
    }
    assert defaults == {
        "path": None,
        "synchronous": "NORMAL",
        "batch_size": 10_000,
        "max_delay": 0.05,
        "deliver": "immediate",
        "busy_timeout": 5.0,
        "wal_limit": 64 * 2**20,
        "retention": None,
    }


def test_environment_variable_chooses_the_file(
    impl: Impl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIPIPE_DB", str(tmp_path / "env.db"))
    db = impl.DatabaseConnection()
    assert db.path == str(tmp_path / "env.db")
    db.save(impl.SMSMessage(), durable=True)
    db.close()
    assert _raw_count(tmp_path / "env.db") == 1


def test_default_is_in_memory(impl: Impl) -> None:
    db = impl.DatabaseConnection()
    assert db.path == ":memory:"
    db.save(impl.EmailMessage())
    assert db.count_by_kind() == {"email": 1}
    assert db.stats().size_bytes == 0


def test_bad_options_are_refused(impl: Impl, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous must be"):
        impl.DatabaseConnection(tmp_path / "x.db", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        impl.DatabaseConnection(tmp_path / "x.db", batch_size=0)
    with pytest.raises(ValueError, match="deliver must be"):
        impl.DatabaseConnection(tmp_path / "x.db", deliver="later")
    assert not impl.DatabaseConnection.instance_exists()


def test_a_directory_is_refused(impl: Impl, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"is a directory"):
        impl.DatabaseConnection(tmp_path)
    with pytest.raises(StorageError, match=r"missing.*does not exist"):
        impl.DatabaseConnection(tmp_path / "missing" / "x.db")
    assert not impl.DatabaseConnection.instance_exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_file_is_refused(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    path.write_bytes(b"")
    path.chmod(0o444)
    with pytest.raises(StorageError, match="is not writable"):
        impl.DatabaseConnection(path)


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, just text\n" * 200)
    before = _digest(path)
    with pytest.raises(StorageError, match=r"junk\.db: not a SQLite database"):
        impl.DatabaseConnection(path)
    assert _digest(path) == before
    assert not impl.DatabaseConnection.instance_exists()


def test_another_applications_database_is_refused_and_left_alone(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    before = _digest(path)
    with pytest.raises(StorageError, match=r"a SQLite database, but not notipipe's \(application_id 0x0\)"):
        impl.DatabaseConnection(path)
    assert _digest(path) == before


def test_a_newer_schema_is_refused_and_left_alone(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with impl.DatabaseConnection(path) as db:
        db.save(impl.SMSMessage())
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = _digest(path)
    with pytest.raises(
        StorageError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this notipipe reads"
    ):
        impl.DatabaseConnection(path)
    assert _digest(path) == before


def test_failing_observer_under_load_never_stops_storage(impl: Impl, open_db: Any) -> None:
    db = open_db(batch_size=500)
    db.error_handler = lambda o, m, e: None

    class Exploding:
        def update(self, message: object) -> None:
            raise RuntimeError("dashboard down")

    db.subscribe(Exploding())
    for _ in range(20):
        db.save_many([impl.SMSMessage() for _ in range(500)])
    db.flush()
    assert db.count_by_kind() == {"sms": 10_000}
    assert db.failures == 10_000


def test_after_commit_delivery_sees_only_durable_messages(impl: Impl, open_db: Any, tmp_path: Path) -> None:
    db = open_db(deliver="after_commit", batch_size=50, max_delay=0.001)
    lag: list[int] = []
    delivered = threading.Event()

    class Checker:
        def __init__(self) -> None:
            self.n = 0

        def update(self, message: object) -> None:
            self.n += 1
            lag.append(self.n - db.durable_count)  # <= 0: already committed when we hear of it
            if self.n == 500:
                delivered.set()

    db.subscribe(Checker())
    db.save_many([impl.EmailMessage(body=str(i)) for i in range(500)])
    assert delivered.wait(10)
    assert len(lag) == 500
    assert max(lag) <= 0


def _producer_storm(db: Any, impl: Impl, threads: int = 8, per_thread: int = 2500) -> list[str]:
    """Many threads save at once (save and save_many mixed); return what went wrong, if anything."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def produce(t: int) -> None:
        barrier.wait()
        try:
            for i in range(0, per_thread, 50):
                if i % 100:
                    db.save_many([impl.SMSMessage(body=f"{t}:{j}") for j in range(i, i + 50)])
                else:
                    for j in range(i, i + 50):
                        db.save(impl.SMSMessage(body=f"{t}:{j}"))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    with fast_switching():
        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    problems = [f"producer raised {e!r}" for e in errors[:3]]
    bodies = [m.body for m in db.after(0, limit=threads * per_thread + 1)]
    if len(bodies) != threads * per_thread:
        problems.append(f"{len(bodies)} stored, {threads * per_thread} saved")
    if len(set(bodies)) != len(bodies):
        problems.append("duplicates stored")
    for t in range(threads):  # each producer's own order is kept
        if [b for b in bodies if b.startswith(f"{t}:")] != [f"{t}:{j}" for j in range(per_thread)]:
            problems.append(f"producer {t}'s messages are missing or out of order")
    return problems


def test_many_producer_threads_store_every_message_exactly_once(impl: Impl, open_db: Any) -> None:
    db = open_db(batch_size=997, max_delay=0.002)
    assert _producer_storm(db, impl) == []


def test_producer_storm_catches_a_shared_connection_without_a_writer(impl: Impl, open_db: Any) -> None:
    # The harness must be able to fail: producers writing straight through the one connection,
    # each in its own transaction and with no lock, collide.
    db = open_db()
    db.flush()
    store = db._open()
    store._ensure_writer()
    conn = store._conn

    def put_many_unsafely(batch: list[Any]) -> int:
        conn.execute("BEGIN")
        for m in batch:
            conn.execute(_insert_sql(1), m._row())
            time.sleep(0)  # let another producer in
        conn.execute("COMMIT")
        return len(batch)

    store.put_many = put_many_unsafely
    store.put = lambda m: put_many_unsafely([m])
    assert _producer_storm(db, impl, threads=4, per_thread=500) != []
    conn.execute("ROLLBACK") if conn.in_transaction else None


def test_stats_and_the_stats_command_leave_out_times_another_tool_wrote(
    impl: Impl, open_db: Any, tmp_path: Path
) -> None:
    """A ``created_at`` that is no Unix time (infinite, text, negative) written by another tool
    is no first or last alert time: ``stats()`` and ``notipipe stats`` show the alerts' own."""
    db = open_db()
    db.save_many([impl.SMSMessage(body="ours", created_at=t) for t in (100.0, 200.0)], durable=True)
    with closing(sqlite3.connect(db.path)) as conn, conn:
        for created_at in (9e999, -9e999, "soon", -5.0):
            conn.execute(
                "INSERT INTO messages (kind, created_at, priority, address, subject, body)"
                " VALUES ('sms', ?, 1, '+15551234567', '', 'other tool')",
                (created_at,),
            )
    stats = db.stats()
    assert (stats.first_at, stats.last_at) == (100.0, 200.0)
    done = subprocess.run(
        [sys.executable, "-m", "notipipe", "stats", "--db", str(db.path)],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
