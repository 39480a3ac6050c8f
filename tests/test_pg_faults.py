"""Faults the PostgreSQL writer survives, each against a real server, on both twins.

(a) the server killed (``-m immediate``) and restarted mid-stream; (b) a commit in doubt, the
connection lost just after or just before the server's COMMIT; (c) a writer process killed in the
middle of its COPY; (d) an error that is not about connectivity, reported and then recovered.
Every flushed alert must be stored exactly once.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import psycopg
import pytest

from notipipe._errors import StorageError
from notipipe._storage.postgresql import store as store_module
from tests._pg_server import PgCluster
from tests._pg_util import exactly_once, query, until
from tests._processes import kill, spawn
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]


class _Counter:
    """An after_commit observer: every id it was told of, and an event at ``target``."""

    def __init__(self, target: int) -> None:
        self.ids: list[int] = []
        self.target = target
        self.reached = threading.Event()

    def update(self, message: Any) -> None:
        self.ids.append(message.id)
        if len(self.ids) >= self.target:
            self.reached.set()


# -- (a) the server killed and restarted mid-stream --------------------------------------------


def test_the_server_killed_and_restarted_mid_stream(
    impl: Impl, pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    total, max_pending = 6000, 400
    db = impl.DatabaseConnection(
        pg_cluster.dsn, batch_size=100, max_delay=0.001, busy_timeout=0.3, deliver="after_commit"
    )
    heard = _Counter(1000)
    db.subscribe(heard)
    bodies = [f"m{i}" for i in range(total)]
    saved = [0]
    errors: list[BaseException] = []
    killed = threading.Event()

    def produce() -> None:
        try:
            for i, body in enumerate(bodies):
                if i == total // 3:
                    # The rest only once the server is gone: a writer that keeps up must not
                    # have stored everything before the kill (the queue would never fill).
                    killed.wait(60)
                db.save(impl.SMSMessage(body=body))
                saved[0] += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert heard.reached.wait(60), "nothing was committed"
        pg_cluster.kill()
        killed.set()
        with caplog.at_level(logging.WARNING, logger="notipipe"):
            # flush() waits for what is queued when it is called: something must be, after the kill.
            until(lambda: db.pending_count > 0, "an alert queued after the kill")
            with pytest.raises(TimeoutError, match="not yet stored"):
                db.flush(timeout=0.5)
            # Back-pressure: the queue fills up and the producer waits, without an error.
            until(lambda: db.pending_count >= max_pending, "the queue to fill")
            until(lambda: "cannot write to" in caplog.text, "the outage warning")
            assert producer.is_alive()
            assert saved[0] < total
            assert not errors
            pg_cluster.start()
            producer.join(120)
            assert not producer.is_alive()
            assert not errors
            db.flush(timeout=60)
    finally:
        killed.set()
        if not pg_cluster.running():
            # close() waits out a server that is gone, as promised: give it one back so a
            # failure above ends as a failure, not as a teardown that never returns.
            pg_cluster.start()
    assert "is writable again" in caplog.text
    exactly_once(pg_cluster.dsn, bodies)
    assert len(heard.ids) == total
    assert len(set(heard.ids)) == total
    assert db.durable_count == total


# -- (b) a commit in doubt -----------------------------------------------------------------------


@pytest.mark.parametrize("deliver", ["immediate", "after_commit"])  # the table's ids, or reserved
@pytest.mark.parametrize("lost", ["after the server committed", "before the server committed"])
def test_a_commit_in_doubt_is_resolved(
    impl: Impl, pg_url: str, pg_dsn: str, lost: str, deliver: str, *, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = impl.DatabaseConnection(pg_url, batch_size=1000, max_delay=0.001, deliver=deliver)
    db.save(impl.SMSMessage(body="first"), durable=True)
    store = db._store
    real_commit = store._send_commit
    cut: list[int] = []

    def commit_then_lose_the_connection(conn: Any) -> None:
        if cut:
            real_commit(conn)
            return
        backend = conn.info.backend_pid
        cut.append(backend)
        if lost.startswith("after"):
            real_commit(conn)
        # The server ends the session (and waits until it has): the client learns it only now.
        assert query(pg_dsn, "SELECT pg_terminate_backend(%s, 10000)", (backend,)) == [(True,)]
        if lost.startswith("after"):
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        real_commit(conn)  # the connection is gone: this COMMIT fails for real

    monkeypatch.setattr(store, "_send_commit", commit_then_lose_the_connection)
    bodies = [f"b{i}" for i in range(300)]
    db.save_many([impl.SMSMessage(body=b) for b in bodies])
    db.flush(timeout=60)
    assert len(cut) == 1
    exactly_once(pg_dsn, ["first", *bodies])
    # The ids the writer reported are the stored ones.
    assert [m.id for m in db.after(0, 1000)] == [
        r[0] for r in query(pg_dsn, "SELECT id FROM notipipe_messages ORDER BY id")
    ]


def _contents(message: Any) -> tuple[float, str]:
    """What the writer's probe names of a row besides its transaction and origin."""
    _kind, created_at, _priority, _address, _subject, body = message._row()
    return created_at, body


def test_a_commit_in_doubt_is_not_taken_for_another_writers_with_the_same_origin(
    impl: Impl, pg_url: str, pg_dsn: str
) -> None:
    # After a crash the server may give the lost transaction's id to a later one, and that one
    # may be another writer's with the same host and pid (a second store in this process, a
    # container with the host's name): its rows must not pass for the batch's.
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    mine = impl.SMSMessage(body="the batch in doubt", created_at=1000.0)
    theirs = impl.SMSMessage(body="another writer's", created_at=2000.0)
    db.save(theirs, durable=True)  # committed, by this process: its origin is this one's
    ((xid,),) = query(pg_dsn, "SELECT xid::text FROM notipipe_messages")
    store = db._store
    attempt = store_module._Attempt([mine._row()])
    attempt.xid = xid  # the in-doubt batch's transaction, as if the server had given it again
    with store._write_lock:
        conn = store._live_conn()
        attempt.probe = (store._host, os.getpid(), *_contents(mine))
        assert not store._committed_before(conn, attempt)
        # The probe of the row that is there, with its contents, finds it: the check itself works.
        attempt.probe = (store._host, os.getpid(), *_contents(theirs))
        assert store._committed_before(conn, attempt)


# -- (c) a writer process killed in the middle of its COPY --------------------------------------


def test_a_writer_killed_mid_copy_leaves_none_of_its_batch(impl: Impl, pg_url: str, pg_dsn: str) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="before"), durable=True)
    child = spawn(impl, "tests._pg_children", "stall_in_copy", pg_url, "4000")
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[:1] == ["stalled"], child.communicate(timeout=30)
        pid, backend = int(line[1]), int(line[2])

        def copy_has_rows() -> bool:
            got = query(
                pg_dsn, "SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = %s", (backend,)
            )
            return bool(got) and int(got[0][0]) > 0

        until(copy_has_rows, "the server to receive part of the COPY")
        # Another writer is not held up by the open COPY.
        db.save_many([impl.SMSMessage(body=f"during {i}") for i in range(500)], durable=True)
    finally:
        kill(child)  # SIGKILL, in the middle of the COPY
    gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
    until(lambda: query(pg_dsn, gone, (backend,)) == [(0,)], "the server to end the killed writer's session")
    assert query(pg_dsn, "SELECT count(*) FROM notipipe_messages WHERE origin_pid = %s", (pid,)) == [(0,)]
    db.save(impl.SMSMessage(body="after"), durable=True)
    exactly_once(pg_dsn, ["before", *(f"during {i}" for i in range(500)), "after"])


# -- (d) trouble that is not about connectivity ------------------------------------------------


def test_other_server_errors_are_reported_and_retried(
    impl: Impl, pg_url: str, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = impl.DatabaseConnection(pg_url, max_delay=0.001)
    db.save(impl.SMSMessage(body="first"), durable=True)
    query(pg_dsn, "ALTER TABLE notipipe_messages RENAME TO notipipe_moved")
    db.save(impl.SMSMessage(body="second"))
    with caplog.at_level(logging.WARNING, logger="notipipe"):
        with pytest.raises(StorageError, match=r"notipipe_messages.*does not exist") as error:
            db.flush(timeout=30)
        assert "retried" in error.value.reason
        query(pg_dsn, "ALTER TABLE notipipe_moved RENAME TO notipipe_messages")
        # An attempt under way as the table came back may still fail (and flush would say so):
        # the writer's next one commits.
        until(lambda: db.durable_count == 2, "the writer to recover")
        db.flush(timeout=30)
    assert "is writable again" in caplog.text
    exactly_once(pg_dsn, ["first", "second"])
