"""DatabaseConnection on PostgreSQL: the SQLite API and semantics, many processes, hostile text.

Every test runs against a real server (the ``pg_dsn`` fixture: a fresh database per test) and on
both twins.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notipipe._errors import ConfigurationError, StorageError
from notipipe._storage.urls import redact
from tests._pg_util import query
from tests._processes import kill, run_child, spawn
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]


@pytest.fixture
def open_pg(impl: Impl, pg_url: str) -> Iterator[Callable[..., Any]]:
    """A factory: this twin's DatabaseConnection on the test's own PostgreSQL database."""

    def make(**options: Any) -> Any:
        return impl.DatabaseConnection(pg_url, **options)

    drop(impl.DatabaseConnection)
    yield make
    drop(impl.DatabaseConnection)


def _sample(impl: Impl) -> list[Any]:
    return [
        impl.EmailMessage("ops@example.com", "disk 91%", "on host-3", priority=4, created_at=1000.5),
        impl.SMSMessage("+15551234567", "db down", priority=5, created_at=1001.0),
        impl.SMSMessage("+15551234568", "db up", priority=1, created_at=1002.25),
        impl.EmailMessage("dev@example.com", "", "", priority=3, created_at=999.0),
    ]


def _exercise(db: Any, impl: Impl) -> dict[str, Any]:
    """The same calls on either backend; what they answered."""
    first, *rest = _sample(impl)
    db.save(first)
    db.save_many(rest)
    db.flush()
    stats = db.stats()
    return {
        "last": db.last(3),
        "last0": db.last(0),
        "after": db.after(1, 2),
        "after_all": db.after(0),
        "kinds": db.count_by_kind(),
        "priorities": db.count_by_priority(),
        "stats": (stats.total, stats.by_kind, stats.first_at, stats.last_at),
        "durable": db.durable_count,
        "pending": db.pending_count,
    }


def test_same_answers_as_sqlite(impl: Impl, open_pg: Callable[..., Any], tmp_path: Path) -> None:
    sqlite_db = impl.DatabaseConnection(tmp_path / "a.db")
    on_sqlite = _exercise(sqlite_db, impl)
    drop(impl.DatabaseConnection)
    db = open_pg()
    on_pg = _exercise(db, impl)
    assert on_pg == on_sqlite
    assert [m.id for m in on_pg["after_all"]] == [1, 2, 3, 4]
    assert on_pg["kinds"] == {"email": 2, "sms": 2}
    assert on_pg["priorities"] == {1: 1, 3: 1, 4: 1, 5: 1}
    stats = db.stats()
    assert stats.size_bytes > 0
    assert stats.origins == ((os.uname().nodename, 1, 4),)


def test_an_empty_database_reads_as_empty(open_pg: Callable[..., Any], pg_dsn: str) -> None:
    db = open_pg()
    assert db.last(5) == []
    assert db.after(0) == []
    assert db.count_by_kind() == {}
    assert db.count_by_priority() == {}
    st = db.stats()
    assert (st.total, st.first_at, st.last_at, st.size_bytes) == (0, None, None, 0)
    # Reading created nothing: the tables come with the first write.
    assert query(pg_dsn, "SELECT to_regclass('notipipe_messages')") == [(None,)]


def test_after_commit_observers_get_each_stored_id(impl: Impl, open_pg: Callable[..., Any]) -> None:
    heard: list[Any] = []
    committed = threading.Event()

    class Observer:
        def update(self, message: Any) -> None:
            heard.append(message)
            if len(heard) == 250:
                committed.set()

    db = open_pg(deliver="after_commit", batch_size=64)
    db.subscribe(Observer())
    sent = [impl.SMSMessage(body=f"n{i}", created_at=1000.0 + i) for i in range(250)]
    db.save_many(sent[:100])
    for m in sent[100:]:
        db.save(m)
    db.flush()
    assert committed.is_set()
    assert [m.body for m in heard] == [m.body for m in sent]
    assert [type(m) for m in heard] == [impl.SMSMessage] * 250
    stored = db.after(0, 1000)
    assert [(m.id, m.body) for m in heard] == [(m.id, m.body) for m in stored]
    assert len({m.id for m in heard}) == 250


def test_the_url_selects_postgresql_also_from_the_environment(
    impl: Impl, pg_url: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pg_url.startswith("postgresql://")
    drop(impl.DatabaseConnection)
    monkeypatch.setenv("NOTIPIPE_DB", "postgres://" + pg_url.removeprefix("postgresql://"))
    try:
        db = impl.DatabaseConnection()
        db.save(impl.SMSMessage(body="via the environment"), durable=True)
        assert db.path.startswith("postgres://")
    finally:
        drop(impl.DatabaseConnection)
    assert query(pg_dsn, "SELECT body FROM notipipe_messages") == [("via the environment",)]


def test_a_password_is_never_shown(impl: Impl) -> None:
    url = "postgresql://alice:s3cret@db.example.com:5432/alerts?password=s3cret&sslmode=require"
    assert "s3cret" not in redact(url)
    assert redact(url).startswith("postgresql://alice:***@db.example.com:5432/alerts?")
    assert redact("postgresql://") == "postgresql://"
    drop(impl.DatabaseConnection)
    try:
        db = impl.DatabaseConnection(url, batch_size=10)
        assert "s3cret" not in db.path
        with pytest.raises(ConfigurationError) as other:
            impl.DatabaseConnection(url, batch_size=20)
        assert "s3cret" not in str(other.value)
        assert "alice:***@" in str(other.value)
    finally:
        db.close()


def test_sqlite_settings_with_a_url_are_refused(impl: Impl) -> None:
    drop(impl.DatabaseConnection)
    for options in ({"synchronous": "FULL"}, {"wal_limit": 2**21}):
        with pytest.raises(ValueError, match="the postgresql backend does not read"):
            impl.DatabaseConnection("postgresql://u:pw@localhost/x", **options)


def test_without_psycopg_a_url_says_what_to_install(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    drop(impl.DatabaseConnection)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'notipipe\[postgresql\]'"):
        impl.DatabaseConnection("postgresql://localhost/x")
    drop(impl.DatabaseConnection)


HOSTILE = [
    'it\'s "quoted"',
    "back\\slash \\N \\. \\x00",
    "tab\tnew\nline\r\n",
    "ünïcödé ✓ 🚨 中文",
    "'); DROP TABLE notipipe_messages; --",
    "\u2028\u2029\ufeff",
    "x" * 100_000,
    "",
]


def _subject(text: str) -> str:
    # One line: a subject refuses every line break str.splitlines() knows (U+2028 too).
    return " ".join(text[:255].splitlines())


# The writer reserves the ids before its rows only for an after_commit observer; else the table
# gives them as the rows go in. Both ways are tried where the rows are written.
DELIVERIES = ["immediate", "after_commit"]


@pytest.mark.parametrize("deliver", DELIVERIES)
def test_hostile_text_round_trips_and_nul_costs_only_its_row(
    impl: Impl, open_pg: Callable[..., Any], deliver: str
) -> None:
    db = open_pg(batch_size=1000, max_delay=10, deliver=deliver)
    good = [impl.EmailMessage("ops@example.com", _subject(text), text) for text in HOSTILE]
    bad = impl.SMSMessage("+15551234567", "nul \x00 inside", created_at=1000.0)
    db.save_many([*good[:3], bad, *good[3:]])
    with pytest.raises(StorageError, match=r"1 alert\(s\) could not be stored.*NUL"):
        db.flush()
    db.flush()  # reported once
    stored = db.after(0)
    assert [(m.subject, m.body) for m in stored] == [(m.subject, m.body) for m in good]
    assert [m.id for m in stored] == sorted(m.id for m in stored)


def _run_writers(impl: Impl, dsn: str, count: int, chunk: int, n: int) -> dict[str, int]:
    """Start ``n`` writer processes together; return each one's pid by tag."""
    children = [
        spawn(impl, "tests._pg_children", "write", dsn, f"w{k}", str(count), str(chunk), stdin=True)
        for k in range(n)
    ]
    pids: dict[str, int] = {}
    try:
        for k, child in enumerate(children):
            assert child.stdout is not None
            word, pid = child.stdout.readline().split()
            assert word == "ready", child.communicate(timeout=30)
            pids[f"w{k}"] = int(pid)
        for child in children:  # all at once: each creates the tables or finds them made
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert out.split()[0] == "done", (out, err)
    finally:
        for child in children:
            kill(child, timeout=10)
    return pids


def test_a_writer_starts_and_flushes_while_another_transaction_holds_the_table(
    impl: Impl, open_pg: Callable[..., Any], pg_dsn: str
) -> None:
    from tests._pg_rows import begin_batch, create_schema

    create_schema(pg_dsn)
    # An open writer transaction elsewhere: any DDL on the table at a writer's start would wait for it.
    holder, held = begin_batch(pg_dsn, ["held open"])
    outcome: list[object] = []

    def write() -> None:
        try:
            db = open_pg()
            db.save(impl.SMSMessage(body="while held"))
            db.flush(20)
            outcome.append(db.after(0))
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        writer.join(30)
        assert not writer.is_alive(), "the writer's start waited for the open transaction"
    finally:
        holder.rollback()
        holder.close()
        writer.join(30)
    assert len(outcome) == 1, outcome
    assert isinstance(outcome[0], list), outcome
    assert [m.body for m in outcome[0]] == ["while held"]
    assert held
    assert held[0] not in {m.id for m in outcome[0]}


def test_connections_keep_alive_unless_the_url_says_otherwise(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe._storage.postgresql.store import PgMessageStore

    class RefusedError(Exception):
        pass

    asked: list[dict[str, Any]] = []

    def connect(url: str, **options: Any) -> Any:
        asked.append(options)
        raise RefusedError

    monkeypatch.setattr(psycopg, "connect", connect)
    store = PgMessageStore.__new__(PgMessageStore)  # only its connection options are under test
    store._psycopg = psycopg
    sep = "&" if "?" in pg_url else "?"
    for url in (pg_url, f"{pg_url}{sep}keepalives_idle=5"):
        store._url = url
        with pytest.raises(RefusedError):
            store._connect("writer")
    keep = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count")
    assert {k: asked[0].get(k) for k in keep} == {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    assert "keepalives_idle" not in asked[1]  # the URL's own setting wins


def test_four_processes_write_at_once(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    count = 3000
    pids = _run_writers(impl, pg_url, count, 250, 4)
    rows = query(pg_dsn, "SELECT id, body, origin_host, origin_pid FROM notipipe_messages ORDER BY id")
    assert len(rows) == 4 * count
    assert len({r[0] for r in rows}) == len(rows)
    host = os.uname().nodename
    for tag, pid in pids.items():
        mine = [r for r in rows if r[3] == pid]
        # Each process's rows, in id order, are its saves in order; its origin is its own.
        assert [r[1] for r in mine] == [f"{tag} {i}" for i in range(count)]
        assert {r[2] for r in mine} == {host}


def test_many_processes_create_the_tables_at_once(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    pids = _run_writers(impl, pg_url, 1, 1, 8)
    rows = query(pg_dsn, "SELECT body, origin_pid FROM notipipe_messages")
    assert sorted(rows) == sorted((f"{tag} 0", pid) for tag, pid in pids.items())


def test_a_forked_child_writes_with_a_store_of_its_own(
    impl: Impl, open_pg: Callable[..., Any], pg_dsn: str
) -> None:
    db = open_pg(max_delay=0.001)
    db.save(impl.SMSMessage(body="parent before"), durable=True)
    pid = os.fork()
    if pid == 0:  # the child: its own writer, its own pid in the rows
        try:
            db.save(impl.SMSMessage(body="child"), durable=True)
            code = 0 if db.count_by_kind() == {"sms": 2} else 3
        except BaseException:  # noqa: BLE001 - any failure is the exit status
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    db.save(impl.SMSMessage(body="parent after"), durable=True)
    rows = query(pg_dsn, "SELECT body, origin_pid FROM notipipe_messages ORDER BY id")
    assert rows == [("parent before", os.getpid()), ("child", pid), ("parent after", os.getpid())]


def test_the_cli_runs_stats_and_tails_on_postgresql(impl: Impl, pg_url: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_child(impl, "notipipe", *args, timeout=120)

    runs = [
        spawn(impl, "notipipe", "run", "-n", "500", "--db", pg_url, "--progress", "none") for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    stats = cli("stats", "--db", pg_url)
    assert stats.returncode == 0, stats.stderr
    assert "alerts: 1,000" in stats.stdout
    assert "from 2 processes" in stats.stdout
    tail = cli("tail", "--db", pg_url, "-n", "3")
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 3
    refused = cli("run", "-n", "1", "--db", pg_url, "--synchronous", "FULL", "--progress", "none")
    assert refused.returncode == 1
    assert "--synchronous is a SQLite setting" in refused.stderr


@pytest.mark.parametrize("deliver", DELIVERIES)
@pytest.mark.parametrize("pack", [True, False], ids=["packed", "write_row"])
def test_both_copy_paths_store_the_same(
    impl: Impl, open_pg: Callable[..., Any], pg_dsn: str, *, pack: bool, deliver: str
) -> None:
    # The pure-Python psycopg build takes the packed path, the C build write_row: both run here,
    # whichever psycopg this interpreter has; each with the ids reserved first or the table's.
    db = open_pg(batch_size=5000, max_delay=10, deliver=deliver)
    db._open()._pack = pack
    emails = [
        impl.EmailMessage("ops@example.com", _subject(text), text, priority=1 + i % 5)
        for i, text in enumerate(HOSTILE * 50)
    ]
    texts = [impl.SMSMessage("+15551234567", f"sms {i} ✓", created_at=1e9 + i / 7) for i in range(3000)]
    sent = emails + texts
    db.save_many(sent)
    db.flush()
    got = db.after(0, 10_000)
    assert [(type(m), m.priority, m.created_at, m.body) for m in got] == [
        (type(m), m.priority, m.created_at, m.body) for m in sent
    ]
    assert query(pg_dsn, "SELECT DISTINCT origin_host, origin_pid FROM notipipe_messages") == [
        (os.uname().nodename, os.getpid())
    ]
