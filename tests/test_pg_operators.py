"""What an operator may do to a live PostgreSQL database, and what the writer then does, each
against a real server, on both twins.

(a) another tool adds a NOT NULL column without a default: every row is refused, the alerts are
kept and retried; (b) the writer's session can no longer write (read-only after a failover or by
``default_transaction_read_only``, a ``statement_timeout``) though a new one could: it is replaced,
also by ``close()``, which otherwise says what it lost; (c) a batch longer than
``statement_timeout`` is split; (d) ``os.fork()`` while the writer or a reader waits on the
server; (e) the server out of reach, or not ready, at the first save is waited for; a server that
refuses the connection for good is an error at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import warnings
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from notipipe._errors import StorageError
from tests._pg_rows import Seen
from tests._pg_server import PgCluster
from tests._pg_util import as_url, exactly_once, query, until
from tests._processes import wait_forked, wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]


def _dbname(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def _admin(dsn: str) -> str:
    """The server's own database: its sessions keep the settings the tests give the test's."""
    return make_conninfo(dsn, dbname="postgres")


def _end_writer_session(db: Any, dsn: str) -> None:
    """End the writer's session as a failover would: its next attempt runs on a new session,
    which takes the database's settings as they are now."""
    backend = db._store._conn.info.backend_pid
    assert query(_admin(dsn), "SELECT pg_terminate_backend(%s, 10000)", (backend,)) == [(True,)]


def _set_for_new_sessions(dsn: str, setting: str) -> None:
    """``ALTER DATABASE ... SET`` (or ``RESET``): what every new session of the test's database
    gets, the writer's current one not."""
    query(_admin(dsn), f"ALTER DATABASE {_dbname(dsn)} {setting}")


def _slow_rows(dsn: str, seconds: float) -> None:
    """Every row inserted takes ``seconds``: a trigger of another tool's, on a busy server."""
    query(
        dsn,
        "CREATE FUNCTION notipipe_test_slow() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$",
    )
    query(
        dsn,
        "CREATE TRIGGER notipipe_test_slow BEFORE INSERT ON notipipe_messages"
        " FOR EACH ROW EXECUTE FUNCTION notipipe_test_slow()",
    )


def _records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "notipipe" and r.levelno == level and text in r.getMessage()
    ]


# -- (a) a schema change refuses every row ---------------------------------------------------------


def test_a_not_null_column_added_by_another_tool_keeps_the_alerts(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(pg_url, max_delay=0.001, batch_size=10)
    db.save(impl.SMSMessage(body="before"), durable=True)
    # What a migration tool does on a table with rows: the default fills them, then goes.
    query(pg_dsn, "ALTER TABLE notipipe_messages ADD COLUMN tenant text NOT NULL DEFAULT 'a'")
    query(pg_dsn, "ALTER TABLE notipipe_messages ALTER COLUMN tenant DROP DEFAULT")
    during = [f"during {i}" for i in range(25)]
    db.save_many([impl.SMSMessage(body=b) for b in during])
    with pytest.raises(StorageError, match=r"refuses every row.*\"tenant\"") as error:
        db.flush(timeout=30)
    assert "retried" in error.value.reason
    assert db.pending_count == 25  # kept, not dropped
    query(pg_dsn, "ALTER TABLE notipipe_messages ALTER COLUMN tenant SET DEFAULT 'b'")
    until(lambda: db.pending_count == 0, "the writer to store the alerts it kept")
    db.save(impl.SMSMessage(body="after"), durable=True)
    db.close()
    exactly_once(pg_dsn, ["before", *during, "after"])
    # One line as the trouble starts, one as it ends; none per alert.
    assert len(_records(caplog, logging.WARNING, "cannot write to")) == 1
    assert len(_records(caplog, logging.WARNING, "writable again")) == 1
    assert _records(caplog, logging.ERROR, "") == []


def test_an_identity_stepping_by_three_keeps_each_alert_at_its_reserved_id(
    impl: Impl, pg_url: str, pg_dsn: str
) -> None:
    # An operator changes the identity's step: a batch's reserved ids no longer follow one
    # another (the writer then reads them all, not the first alone), and the ids stored are the
    # ones the sequence handed out, as after_commit observers are told.
    seen = Seen()
    db = impl.DatabaseConnection(pg_url, max_delay=0.001, deliver="after_commit")
    db.subscribe(seen)
    db.save(impl.SMSMessage(body="before"), durable=True)
    query(pg_dsn, "ALTER TABLE notipipe_messages ALTER COLUMN id SET INCREMENT BY 3")
    db.save_many([impl.SMSMessage(body=f"stepped {i}") for i in range(5)], durable=True)
    db.save(impl.SMSMessage(body="after"), durable=True)
    stored = [m.id for m in db.after(0)]
    until(lambda: len(seen.messages) == 7, "the after_commit observer to get every alert")
    db.close()
    assert seen.ids() == stored
    assert [b - a for a, b in itertools.pairwise(stored)] == [3] * 6
    # The sequence goes on past them: nothing stored under an id it has still to hand out.
    sequence = "pg_get_serial_sequence('notipipe_messages', 'id')::regclass"
    assert query(pg_dsn, f"SELECT pg_sequence_last_value({sequence})") == [(stored[-1],)]
    exactly_once(pg_dsn, ["before", *(f"stepped {i}" for i in range(5)), "after"])


def test_a_unique_index_refusing_a_duplicate_costs_only_the_duplicate(
    impl: Impl, pg_url: str, pg_dsn: str
) -> None:
    # The row the writer stored last is a duplicate of itself under the index: the server
    # refusing it says nothing about the next alert.
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.EmailMessage("ops@example.com", "disk full", "first"), durable=True)
    query(pg_dsn, "CREATE UNIQUE INDEX dedupe ON notipipe_messages (address, subject)")
    db.save(impl.EmailMessage("ops@example.com", "disk full", "again"))
    with pytest.raises(StorageError, match=r"1 alert\(s\) could not be stored.*dedupe"):
        db.flush(timeout=30)
    db.save(impl.EmailMessage("ops@example.com", "disk ok", "other"), durable=True)
    db.close()
    exactly_once(pg_dsn, ["first", "other"])


# -- (b) a session that cannot write any more --------------------------------------------------------


def test_a_session_turned_read_only_is_replaced(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = on")
    _end_writer_session(db, pg_dsn)
    db.save(impl.SMSMessage(body="during"))
    with pytest.raises(StorageError, match="read-only transaction"):
        db.flush(timeout=30)
    # Every new session can write again; the writer's own is read-only for good.
    _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = off")
    until(lambda: db.durable_count == 2, "the writer to write on a new session")
    db.flush(timeout=30)
    exactly_once(pg_dsn, ["before", "during"])


def test_a_statement_timeout_lifted_reaches_the_writer(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    _slow_rows(pg_dsn, 0.05)
    _set_for_new_sessions(pg_dsn, "SET statement_timeout = '20ms'")
    _end_writer_session(db, pg_dsn)
    db.save(impl.SMSMessage(body="during"))
    with pytest.raises(StorageError, match="statement timeout"):
        db.flush(timeout=30)
    _set_for_new_sessions(pg_dsn, "RESET statement_timeout")
    until(lambda: db.durable_count == 2, "the writer to write on a new session")
    db.flush(timeout=30)
    exactly_once(pg_dsn, ["before", "during"])


def test_close_writes_on_a_new_session(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = on")
    _end_writer_session(db, pg_dsn)
    during = [f"during {i}" for i in range(3)]
    db.save_many([impl.SMSMessage(body=b) for b in during])
    with pytest.raises(StorageError, match="read-only transaction"):
        db.flush(timeout=30)
    _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = off")
    db.close()  # a new session could write: nothing is lost
    exactly_once(pg_dsn, ["before", *during])


def test_close_says_how_many_alerts_it_lost_and_why(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = on")
    _end_writer_session(db, pg_dsn)
    db.save_many([impl.SMSMessage(body=f"during {i}") for i in range(3)])
    with pytest.raises(StorageError, match=r"3 alerts could not be stored before closing: .*read-only"):
        db.close()
    exactly_once(pg_dsn, ["before"])
    # Logged as well: a close() from an after_commit observer (the writer thread) cannot raise it.
    assert len(_records(caplog, logging.ERROR, "closed with 3 alerts not stored")) == 1


def test_close_from_the_writer_thread_logs_what_it_lost(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(pg_url, max_delay=0.001, deliver="after_commit")
    closed = threading.Event()

    class Closer:
        def update(self, message: Any) -> None:
            if message.body == "close now":
                _set_for_new_sessions(pg_dsn, "SET default_transaction_read_only = on")
                _end_writer_session(db, pg_dsn)
                db.save_many([impl.SMSMessage(body=f"after {i}") for i in range(2)])
                db.close()
                closed.set()

    db.subscribe(Closer())
    db.save(impl.SMSMessage(body="close now"))
    assert closed.wait(30)
    until(lambda: bool(_records(caplog, logging.ERROR, "closed with 2 alerts not stored")), "the loss logged")
    exactly_once(pg_dsn, ["close now"])


# -- (c) a batch longer than statement_timeout --------------------------------------------------------


def test_a_batch_longer_than_statement_timeout_is_split(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    total = 2000
    db = impl.DatabaseConnection(pg_url, max_delay=0.001, batch_size=total)
    db.save(impl.SMSMessage(body="before"), durable=True)
    # The whole batch takes several times the limit; an eighth of it, a fraction.
    _slow_rows(pg_dsn, 0.002)
    _set_for_new_sessions(pg_dsn, "SET statement_timeout = '1s'")
    _end_writer_session(db, pg_dsn)
    bodies = [f"m{i}" for i in range(total)]
    db.save_many([impl.SMSMessage(body=b) for b in bodies])
    db.flush(timeout=300)
    learned = _records(caplog, logging.WARNING, "per transaction")
    assert len(learned) >= 1, "the size that fits was not learned"
    assert db._store._fit < total
    db.save(impl.SMSMessage(body="after"), durable=True)
    exactly_once(pg_dsn, ["before", *bodies, "after"])


def test_an_administrator_cancelling_the_writer_does_not_shrink_its_batches(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # pg_cancel_backend ends a statement with the same SQLSTATE as statement_timeout; only the
    # server's time limit means "a smaller batch fits".
    caplog.set_level(logging.WARNING, logger="notipipe")
    total = 200
    db = impl.DatabaseConnection(pg_url, max_delay=0.001, batch_size=total)
    db.save(impl.SMSMessage(body="before"), durable=True)
    backend = db._store._conn.info.backend_pid
    _slow_rows(pg_dsn, 0.02)
    bodies = [f"m{i}" for i in range(total)]
    db.save_many([impl.SMSMessage(body=b) for b in bodies])
    copying = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query LIKE 'COPY%%'"
    until(lambda: query(_admin(pg_dsn), copying, (backend,)) == [(1,)], "the writer's COPY")
    assert query(_admin(pg_dsn), "SELECT pg_cancel_backend(%s)", (backend,)) == [(True,)]
    until(lambda: db.pending_count == 0, "the writer to store the batch again")
    db.flush(timeout=60)
    assert _records(caplog, logging.WARNING, "writing at most") == []
    assert db._store._fit == total
    db.close()
    exactly_once(pg_dsn, ["before", *bodies])


# -- (d) fork while a call waits on the server ----------------------------------------------------------


def _fork_now(events: list[str], children: list[int]) -> None:
    """Fork; the child leaves at once. ``events`` gets "forked" once fork() returned here."""
    with warnings.catch_warnings():
        # Python warns of a fork in a threaded process: the child here only exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    children.append(pid)
    events.append("forked")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.parametrize("waiting", ["writer", "reader"])
def test_fork_does_not_wait_for_a_call_waiting_on_the_server(
    impl: Impl, pg_url: str, pg_dsn: str, waiting: str
) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    events: list[str] = []
    children: list[int] = []
    reader = threading.Thread(target=lambda: events.append(f"read {len(db.last(5))}"))
    waiting_for_lock = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(pg_dsn) as maintenance:  # one transaction, until the block ends
        maintenance.execute("LOCK TABLE notipipe_messages IN ACCESS EXCLUSIVE MODE")
        if waiting == "writer":
            db.save(impl.SMSMessage(body="during"))
        else:
            reader.start()
        until(lambda: query(pg_dsn, waiting_for_lock) == [(1,)], f"the {waiting} to wait for the lock")
        forker = threading.Thread(target=_fork_now, args=(events, children))
        forker.start()
        # A fork that waits for the call returns only once the lock goes: the events say which
        # came first (the wait is only how long a fork that does not wait is given).
        wait_until(lambda: bool(events), timeout=20)
        events.append("lock released")
    forker.join(60)
    assert events[:2] == ["forked", "lock released"]
    assert [wait_forked(pid, 30) for pid in children] == [0]
    if waiting == "reader":
        reader.join(60)
        assert events[2:] == ["read 1"]
    db.flush(timeout=30)
    exactly_once(pg_dsn, ["before", "during"] if waiting == "writer" else ["before"])


# -- (e) the first connection --------------------------------------------------------------------------


def _as_server_files(cluster: PgCluster, name: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(cluster.data / name, "postgres", "postgres")


def test_a_server_out_of_reach_at_the_first_save_is_waited_for(
    impl: Impl, pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    pg_cluster.stop()
    db = impl.DatabaseConnection(pg_cluster.dsn, busy_timeout=0.3, max_delay=0.001)
    try:
        with caplog.at_level(logging.WARNING, logger="notipipe"):
            db.save(impl.SMSMessage(body="while down"))
            with pytest.raises(TimeoutError, match="1 messages not yet stored"):
                db.flush(timeout=0.5)
            until(lambda: "cannot write to" in caplog.text, "the outage warning")
    finally:
        pg_cluster.start()
    db.flush(timeout=60)
    db.save(impl.SMSMessage(body="after"), durable=True)
    exactly_once(pg_cluster.dsn, ["while down", "after"])


def test_a_server_not_ready_at_the_first_save_is_waited_for(impl: Impl, pg_cluster: PgCluster) -> None:
    # A standby without hot standby answers every connection "not accepting connections" until it
    # is promoted: a server starting, or a failover under way.
    pg_cluster.stop()
    (pg_cluster.data / "standby.signal").touch()
    _as_server_files(pg_cluster, "standby.signal")
    with open(pg_cluster.data / "postgresql.auto.conf", "a") as conf:
        conf.write("hot_standby = off\n")
    pg_cluster.start()
    db = impl.DatabaseConnection(pg_cluster.dsn, max_delay=0.001)
    try:
        db.save(impl.SMSMessage(body="before promotion"))
        with pytest.raises(TimeoutError, match="1 messages not yet stored"):
            db.flush(timeout=0.5)
    finally:
        pg_cluster._run("pg_ctl", "-D", str(pg_cluster.data), "-w", "promote")
    db.flush(timeout=60)
    exactly_once(pg_cluster.dsn, ["before promotion"])


@pytest.mark.parametrize("wrong", ["dbname", "user"])
def test_an_unknown_database_or_role_is_an_error_at_once(impl: Impl, pg_server: str, wrong: str) -> None:
    url = as_url(make_conninfo(pg_server, **{wrong: "notipipe_no_such_thing"}, password="s3cret"))
    db = impl.DatabaseConnection(url)
    with pytest.raises(
        StorageError, match=r"cannot connect: .*notipipe_no_such_thing.* does not exist"
    ) as error:
        db.save(impl.SMSMessage(body="x"))
    assert "s3cret" not in str(error.value)
    assert db.pending_count == 0


def test_a_wrong_password_is_an_error_at_once(impl: Impl, pg_cluster: PgCluster) -> None:
    query(pg_cluster.dsn, "CREATE ROLE notipipe_alice LOGIN PASSWORD 'right'")
    hba = pg_cluster.data / "pg_hba.conf"
    hba.write_text("local all notipipe_alice scram-sha-256\n" + hba.read_text())
    pg_cluster._run("pg_ctl", "-D", str(pg_cluster.data), "reload")
    url = as_url(make_conninfo(pg_cluster.dsn, user="notipipe_alice", password="wrong"))

    def refused() -> bool:
        try:
            psycopg.connect(url).close()
        except psycopg.OperationalError:
            return True
        return False

    until(refused, "the server to reload pg_hba.conf")
    db = impl.DatabaseConnection(url)
    with pytest.raises(StorageError, match=r"cannot connect: .*password authentication failed") as error:
        db.save(impl.SMSMessage(body="x"))
    assert "wrong" not in str(error.value)
