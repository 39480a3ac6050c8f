"""The store's promises under attack: kill -9, a lock held by another process, refused rows,
observers that exit or read back, fork, racing creators, a full disk, hostile paths, damaged
files, several writer processes.

Child processes run ``tests/_children.py`` programs with the twin under test selected the way
users select it (``NOTIPIPE_NO_EXTENSIONS``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from notipipe._errors import ReentrancyError, StorageError
from notipipe._storage.interface import StoreOptions
from notipipe._storage.sqlite.store import MessageStore
from tests._processes import child_env, kill, run_child, spawn, wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(
        reason="opens the DatabaseConnection singleton, mounts file systems, or waits on child processes"
    ),
]


def _child(impl: Impl, *args: str) -> subprocess.Popen[str]:
    """A ``tests/_children.py`` program running on ``impl``'s twin."""
    return spawn(impl, "tests._children", *args)


def _run_child(impl: Impl, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A ``tests/_children.py`` program on ``impl``'s twin, run to its end."""
    return run_child(impl, "tests._children", *args, timeout=timeout)


def _bodies(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [str(b) for (b,) in conn.execute("SELECT body FROM messages ORDER BY id")]


def _committed(path: Path) -> int:
    """The rows another process has committed so far (0 before it made the table)."""
    try:
        with closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


# -- 1. a trickle is committed within max_delay ------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_after_a_trickle_loses_nothing_older_than_max_delay(
    impl: Impl, tmp_path: Path, round_: int
) -> None:
    path = tmp_path / "trickle.db"
    proc = _child(impl, "trickle", str(path), "5", "0.05", "0.05")
    assert proc.stdout is not None
    saved: list[float] = []
    for line in proc.stdout:
        if line.startswith("saved"):
            saved.append(float(line.split()[2]))
        if line.startswith("done"):
            break
    # Every alert is committed within max_delay of being saved; allow a loaded machine a second.
    wait_until(lambda: _committed(path) == 5, timeout=1.0)
    kill(proc, timeout=10)
    assert len(saved) == 5
    assert _bodies(path) == [f"trickle {i}" for i in range(5)]


def test_after_commit_observers_hear_of_a_lone_alert_with_its_stored_id(impl: Impl, tmp_path: Path) -> None:
    db = impl.DatabaseConnection(tmp_path / "one.db", deliver="after_commit", max_delay=0.05)
    heard: list[Any] = []
    got = threading.Event()

    class Dashboard:
        def update(self, message: Any) -> None:
            heard.append(message)
            got.set()

    db.subscribe(Dashboard())
    db.save(impl.SMSMessage(body="first"))
    db.save(impl.SMSMessage(body="second"))
    assert got.wait(10), "a lone alert never reached an after_commit observer"
    wait_until(lambda: len(heard) >= 2, 10)
    assert [(m.body, m.id) for m in heard] == [("first", 1), ("second", 2)]
    assert [m.id for m in db.after(0)] == [1, 2]


@pytest.mark.parametrize("round_", range(3))
def test_kill_9_during_a_flood_loses_nothing_acknowledged(impl: Impl, tmp_path: Path, round_: int) -> None:
    path = tmp_path / "flood.db"
    proc = _child(impl, "flood", str(path), "1000")
    assert proc.stdout is not None
    acknowledged = 0
    target = 20_000 * (round_ + 1)
    for line in proc.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged >= target:
            break
    kill(proc, timeout=10)
    bodies = _bodies(path)
    assert len(bodies) >= acknowledged
    assert bodies[:acknowledged] == [f"flood {i}" for i in range(acknowledged)]


# -- 2. a lock held by another process is a wait, not a failure ---------------------------------

_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_lock_held_past_busy_timeout_is_waited_out(
    impl: Impl, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.db"
    db = impl.DatabaseConnection(path, busy_timeout=0.3, max_delay=0.01, batch_size=10)
    db.save(impl.SMSMessage(body="before"), durable=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path), "5"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    caplog.set_level(logging.WARNING, logger="notipipe")
    saved = [impl.SMSMessage(body=f"during {i}") for i in range(30)]
    for m in saved:
        db.save(m)

    def locked_reported() -> bool:
        # The writer says why once it has met the lock: on a busy machine that may take a while.
        try:
            db.flush(timeout=0.2)
        except TimeoutError as error:
            return re.search(r"30 messages not yet stored.*database is locked", str(error)) is not None
        return False

    assert wait_until(locked_reported, 3.0)
    # More than max_pending (four batches) while locked: the producer is held back, not refused.
    more = [impl.SMSMessage(body=f"held back {i}") for i in range(100)]
    producer = threading.Thread(target=lambda: [db.save(m) for m in more])
    producer.start()
    producer.join(0.3)
    assert producer.is_alive()
    assert db.pending_count <= 40
    db.flush()  # waits for the holder to let go
    producer.join()
    db.flush()
    saved += more
    holder.communicate(timeout=10)
    assert holder.returncode == 0
    db.save(impl.SMSMessage(body="after"), durable=True)
    assert _bodies(path) == ["before", *[m.body for m in saved], "after"]
    assert any("database is locked" in r.getMessage() for r in caplog.records)
    assert any("writable again" in r.getMessage() for r in caplog.records)


# -- 3. one refused row costs only itself --------------------------------------------------------


def _row(body: str) -> tuple[str, float, int, str, str, str]:
    return ("sms", 1.0, 3, "+15550000000", "", body)


def test_a_row_sqlite_refuses_costs_only_itself(tmp_path: Path) -> None:
    path = str(tmp_path / "rows.db")
    store = MessageStore(
        path, lambda batch: [_row(str(b)) for b in batch], StoreOptions(max_delay=10, batch_size=1000)
    )
    store.put_many(
        ["ok 1", *[f"ok {i}" for i in range(2, 51)], "bad \ud800", *[f"ok {i}" for i in range(51, 101)]]
    )
    with pytest.raises(StorageError, match=r"1 alert\(s\) could not be stored.*surrogate"):
        store.flush()
    store.flush()  # reported once; the writer lives on
    store.put("ok 101")
    store.flush()
    store.close()
    assert _bodies(Path(path)) == [f"ok {i}" for i in range(1, 102)]
    assert store.durable == 101


def test_a_message_whose_row_cannot_be_built_costs_only_itself(tmp_path: Path) -> None:
    path = str(tmp_path / "rows.db")

    def to_rows(batch: list[object]) -> list[tuple[str, float, int, str, str, str]]:
        return [_row(str(b)) if b != "boom" else _row(str(1 / 0)) for b in batch]

    store = MessageStore(path, to_rows, StoreOptions(max_delay=10))
    store.put_many(["a", "boom", "b"])
    with pytest.raises(StorageError, match="division by zero"):
        store.flush()
    store.close()
    assert _bodies(Path(path)) == ["a", "b"]


# -- 4. an observer's BaseException on the writer thread -----------------------------------------


@pytest.mark.parametrize("exit_type", [SystemExit, KeyboardInterrupt])
def test_an_after_commit_observer_that_exits_does_not_kill_the_writer(
    impl: Impl, tmp_path: Path, exit_type: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    db = impl.DatabaseConnection(tmp_path / "exit.db", deliver="after_commit", max_delay=0.01)
    calls: list[str] = []

    class Quitter:
        def update(self, message: Any) -> None:
            calls.append(message.body)
            if len(calls) == 1:
                raise exit_type("observer wants out")

    db.subscribe(Quitter())
    db.save(impl.SMSMessage(body="0"))
    # flush() returns once after_commit observers have heard: here, with what went wrong.
    with pytest.raises(StorageError, match=f"observer raised {exit_type.__name__}"):
        db.flush(timeout=10)
    for i in range(1, 11):
        db.save(impl.SMSMessage(body=str(i)))
    db.flush(timeout=10)
    db.close()
    assert _bodies(tmp_path / "exit.db") == [str(i) for i in range(11)]
    assert calls[-1] == "10"
    assert any(exit_type.__name__ in r.getMessage() for r in caplog.records)


# -- 5. an after_commit observer that reads the store ---------------------------------------------


def test_an_after_commit_observer_can_read_the_store(impl: Impl, tmp_path: Path) -> None:
    result = _run_child(impl, "after_commit_reader", str(tmp_path / "read.db"), timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flush refused"
    assert lines[1] == "totals {'email': 1} last_id 1 message_id 1"
    assert lines[3] == "totals {'email': 2} last_id 2 message_id 2"


def test_flush_from_the_writer_thread_is_refused_at_once(impl: Impl, tmp_path: Path) -> None:
    db = impl.DatabaseConnection(tmp_path / "re.db", deliver="after_commit", max_delay=0.01)
    errors: list[BaseException] = []
    done = threading.Event()

    class Flusher:
        def update(self, message: Any) -> None:
            try:
                db.save(impl.SMSMessage(body="from the observer"), durable=True)
            except ReentrancyError as error:
                errors.append(error)
            done.set()

    db.subscribe(Flusher())
    db.save(impl.SMSMessage(body="start"))
    assert done.wait(10)
    assert "would wait on itself" in str(errors[0])
    db.unsubscribe(db.observers[0])
    db.flush(timeout=10)
    assert [m.body for m in db.last(5)] == ["start", "from the observer"]


# -- 6. fork while the pipeline is busy ----------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_while_busy_children_exit_and_can_write(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "fork.db"
    result = _run_child(impl, "fork_busy", str(path), timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "children [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"
    saved = int(lines[1].split()[2])
    bodies = _bodies(path)
    assert bodies.count("parent") == saved  # the parent's alerts, every one, once
    assert bodies.count("child") == 50  # five children wrote ten each through the same object


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_while_other_threads_hold_the_locks(impl: Impl, tmp_path: Path) -> None:
    # The before-fork handler waits for SQLite calls in progress (the store's own connection
    # locks), so those two cannot be held across a fork; every other lock is, deliberately.
    result = _run_child(impl, "fork_with_locks_held", str(tmp_path / "locks.db"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["child 0"]


# -- 7. several processes creating one new database at once --------------------------------------


@pytest.mark.parametrize("existing", ["missing", "empty"])
def test_processes_creating_the_same_new_database_all_open_it(
    impl: Impl, tmp_path: Path, existing: str
) -> None:
    rounds = 12
    if existing == "empty":  # made by a deployment script, say: 0 bytes, to become a database
        for r in range(rounds):
            (tmp_path / f"r{r}.db").touch()
    start = time.time() + 3  # after every interpreter has started
    procs = [_child(impl, "create", str(tmp_path), str(rounds), str(start)) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    failures = [line for out, _ in outputs for line in out.splitlines() if line.startswith("failed")]
    assert failures == []
    assert [out.splitlines()[-1] for out, _ in outputs] == [f"ok {rounds}"] * 4
    for r in range(rounds):
        assert len(_bodies(tmp_path / f"r{r}.db")) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if ".new" in p.name) == []


# -- 8 and 9. a full disk, made by the test ----------------------------------------------------


@contextmanager
def _small_file_system(tmp_path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` KiB mounted for the test (needs root: CI runs as root)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot make a small file system for the disk-full test: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):  # ENOSPC: the file system is full
        while os.write(fd, b"\0" * 1024):
            pass
    os.close(fd)
    return filler


def test_a_full_disk_names_the_real_reason_and_keeps_every_alert(impl: Impl, tmp_path: Path) -> None:
    with _small_file_system(tmp_path, 512) as small:
        path = small / "full.db"
        db = impl.DatabaseConnection(path, max_delay=0.01, batch_size=100)
        first = [impl.SMSMessage(body=f"acknowledged {i}") for i in range(100)]
        db.save_many(first, durable=True)
        filler = _fill(small)
        later = [impl.SMSMessage(body=f"later {i} " + "x" * 100) for i in range(300)]
        db.save_many(later)
        with pytest.raises(StorageError, match="database or disk is full") as caught:
            db.flush()
        assert "rollback" not in str(caught.value)
        assert _bodies(path)[:100] == [m.body for m in first]  # acknowledged rows intact
        filler.unlink()  # space again: the queued alerts are retried and stored
        db.flush(timeout=30)
        db.close()
        assert _bodies(path) == [m.body for m in first + later]


def test_a_full_disk_at_creation_leaves_no_file(impl: Impl, tmp_path: Path) -> None:
    with _small_file_system(tmp_path, 64) as small:
        _fill(small)
        db = impl.DatabaseConnection(small / "new.db")
        with pytest.raises(StorageError, match="cannot create the database"):
            db.save(impl.SMSMessage())
        assert sorted(p.name for p in small.iterdir()) == ["filler"]


# -- 9. refusing writes nothing -------------------------------------------------------------------


def _listing(directory: Path) -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in directory.iterdir())


@pytest.mark.parametrize("content", [b"x", b"SQLite format 3\x00", b"\x00" * 4096])
def test_a_short_or_foreign_file_is_refused_untouched(impl: Impl, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "odd.db"
    path.write_bytes(content)
    before = _listing(tmp_path)
    with pytest.raises(StorageError, match="not a SQLite database"):
        impl.DatabaseConnection(path)
    assert _listing(tmp_path) == before


def test_a_character_device_is_refused_without_a_journal(impl: Impl, tmp_path: Path) -> None:
    link = tmp_path / "null.db"
    link.symlink_to("/dev/null")
    journal = Path("/dev/null-journal")  # where SQLite would put it: beside the link's target
    if journal.exists():  # debris of an earlier run of a version with this bug
        journal.unlink()
    with pytest.raises(StorageError, match="is not a regular file"):
        impl.DatabaseConnection(link)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.db"]
    assert not journal.exists()


@pytest.mark.parametrize("name", ["nul\x00.db", "lone\ud800.db"])
def test_unnameable_paths_are_a_storage_error(impl: Impl, tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageError, match="path"):
        impl.DatabaseConnection(str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


def test_a_path_that_is_not_utf8_works(impl: Impl, tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.db")  # Latin-1 bytes: a surrogate-escaped str
    with impl.DatabaseConnection(str(tmp_path / name)) as db:
        db.save(impl.SMSMessage(body="bytes path"), durable=True)
    assert (os.fsencode(tmp_path) + b"/caf\xe9.db") in [os.fsencode(p) for p in tmp_path.iterdir()]


def _damage(path: Path) -> None:
    with open(path, "r+b") as f:  # overwrite the middle of the file: a b-tree page turns to junk
        size = f.seek(0, os.SEEK_END)
        f.seek(size // 2)
        f.write(os.urandom(4096))


def test_a_damaged_file_is_a_storage_error_in_the_library_and_the_cli(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    with impl.DatabaseConnection(path) as db:
        db.save_many([impl.EmailMessage(body="x" * 2000) for _ in range(2000)])
    _damage(path)
    db = impl.DatabaseConnection(path)
    with pytest.raises(StorageError, match=r"malformed|not a database"):
        db.count_by_kind()
    drop(impl.DatabaseConnection)
    cli = subprocess.run(
        [sys.executable, "-m", "notipipe", "stats", "--db", str(path)],
        env=child_env(impl),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1
    assert "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1


# -- 10. several processes on one file ------------------------------------------------------------


@pytest.mark.slow
def test_several_writer_processes_all_progress_and_the_wal_stays_bounded(impl: Impl, tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    seconds = 12
    limit = 2 * 2**20  # small, so that a short run crosses it many times
    procs = [_child(impl, "writer", str(path), str(seconds), str(limit)) for _ in range(3)]
    biggest = 0
    while any(p.poll() is None for p in procs):
        with contextlib.suppress(OSError):
            biggest = max(biggest, os.path.getsize(str(path) + "-wal"))
        time.sleep(0.05)
    committed_total = 0
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        reports = [(int(n), float(t)) for kind, n, t in (line.split() for line in out.splitlines()) if kind]
        # No process starves: each commits something in every 3-second window of its run.
        stamps = [t for (n, t), (m, _) in zip(reports[1:], reports, strict=False) if n > m]
        assert stamps, f"a writer committed nothing: {out[-500:]}"
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert max(gaps, default=0) < 3, f"a writer stalled for {max(gaps):.1f} s"
        committed_total += reports[-1][0]
    assert len(_bodies(path)) == committed_total
    # The bound: the limit, plus the batches the other processes are committing at that moment.
    assert biggest <= limit + 4 * 2**20, f"WAL reached {biggest / 2**20:.1f} MiB"


# -- also wanted: readers need no write access; first use fixes the configuration ----------------


def test_a_reader_needs_no_write_access_and_starts_no_writer(impl: Impl, tmp_path: Path) -> None:
    with _small_file_system(tmp_path, 1024) as small:
        path = small / "ro.db"
        with impl.DatabaseConnection(path) as db:
            db.save_many([impl.SMSMessage(body=str(i)) for i in range(5)])
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(small)], capture_output=True, text=True, check=False
        )
        assert remount.returncode == 0, remount.stderr
        before = {t.ident for t in threading.enumerate()}
        db = impl.DatabaseConnection(path)
        assert db.count_by_kind() == {"sms": 5}
        assert [m.body for m in db.last(2)] == ["3", "4"]
        assert db.stats().total == 5
        assert [t.name for t in threading.enumerate() if t.ident not in before] == []
        with pytest.raises(StorageError, match=r"read-only|not writable|readonly"):
            db.save(impl.SMSMessage(body="refused"))
        db.close()


def test_configuration_given_before_first_use_applies(impl: Impl, tmp_path: Path) -> None:
    from notipipe._errors import ConfigurationError

    early = impl.DatabaseConnection()  # at import time, say, to subscribe a dashboard
    heard: list[Any] = []

    class Dashboard:
        def update(self, message: Any) -> None:
            heard.append(message)

    early.subscribe(Dashboard())
    db = impl.DatabaseConnection(tmp_path / "app.db", deliver="after_commit")
    assert db is early
    assert db.path == str(tmp_path / "app.db")
    db.save(impl.SMSMessage(body="configured"))
    db.flush()
    assert [(m.body, m.id) for m in heard] == [("configured", 1)]
    assert _bodies(tmp_path / "app.db") == ["configured"]
    with pytest.raises(ConfigurationError, match="already open"):
        impl.DatabaseConnection(tmp_path / "other.db")
    assert impl.DatabaseConnection(tmp_path / "app.db", deliver="after_commit") is db


# -- found by review: the writer's death is reported by close(); reads leave reports alone ------


def test_close_reports_a_writer_that_died(tmp_path: Path) -> None:
    def to_rows(batch: list[object]) -> list[tuple[str, float, int, str, str, str]]:
        raise SystemExit("to_rows gave up")

    store = MessageStore(str(tmp_path / "dead.db"), to_rows, StoreOptions(max_delay=0))
    store.put("x")
    with pytest.raises(StorageError, match="the writer stopped: SystemExit"):
        store.flush(timeout=10)
    assert not store.closed  # nobody closed it
    with pytest.raises(StorageError, match="the writer stopped"):
        store.close()
    with pytest.raises(StorageError, match="the writer stopped"):
        store.put("y")


def test_reads_leave_the_reports_to_flush(tmp_path: Path) -> None:
    store = MessageStore(
        str(tmp_path / "r.db"), lambda batch: [_row(str(b)) for b in batch], StoreOptions(max_delay=10)
    )
    store.put_many(["ok", "bad \ud800"])
    assert store.query("SELECT body FROM messages") == [("ok",)]  # no report raised here
    with pytest.raises(StorageError, match="could not be stored"):
        store.flush()
    store.close()


def test_reading_a_database_not_yet_created_creates_nothing(impl: Impl, tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    db = impl.DatabaseConnection(tmp_path / "later.db")
    assert db.count_by_kind() == {}
    assert db.last(5) == []
    assert db.stats().total == 0
    assert list(tmp_path.iterdir()) == []
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []


def test_a_read_only_file_system_with_an_unmerged_wal_is_refused_not_misread(
    impl: Impl, tmp_path: Path
) -> None:
    with _small_file_system(tmp_path, 4096) as small:
        path = small / "wal.db"
        proc = _child(impl, "flood", str(path), "1000")
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line.split()[1]) >= 20_000:
                break
        kill(proc, timeout=10)  # committed alerts stay in the -wal file
        assert os.path.getsize(str(path) + "-wal") > 0
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(small)], capture_output=True, text=True, check=False
        )
        assert remount.returncode == 0, remount.stderr
        db = impl.DatabaseConnection(path)
        with pytest.raises(StorageError, match="read-only file system with committed changes"):
            db.count_by_kind()
        db.close()
