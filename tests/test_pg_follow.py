"""``DatabaseConnection.follow`` (and, where the reading is shared, durable subscribers) against a
real PostgreSQL server: snapshot windows skip no late commit, a long transaction elsewhere stalls
nothing, and a lost listening connection is remade and caught up without a wake-up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests._pg_rows import Seen, begin_batch, commit_batch, create_schema, write_batch
from tests._pg_util import as_url, query
from tests._processes import kill, wait_until, with_sigint
from tests.conftest import Impl

pytestmark = pytest.mark.system


@contextlib.contextmanager
def following(db: Any, **options: Any) -> Iterator[Seen]:
    """``db.follow(**options)`` on a thread, its messages collected; stopped (and checked) on exit."""
    seen, stop, errors = Seen(), threading.Event(), list[BaseException]()
    pages = db.follow(stop=stop, **options)

    def run() -> None:
        try:
            for page in pages:
                for message in page:
                    seen.update(message)
        except BaseException as error:  # noqa: BLE001 - re-raised by the test
            errors.append(error)

    thread = threading.Thread(target=run, name="follower")
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "follow() did not end after stop was set"
    if errors:
        raise errors[0]


@contextlib.contextmanager
def reading(db: Any, how: str, poll: float = 0.2) -> Iterator[Seen]:
    """The messages ``db`` gives a follower, or a durable subscriber, as they are committed."""
    if how == "follow":
        with following(db, poll=poll) as seen:
            yield seen
        return
    seen = Seen()
    assert db.subscribe(seen, durable_name="reader")
    try:
        yield seen
    finally:
        assert db.unsubscribe(seen)


READERS = pytest.mark.parametrize("how", ["follow", "durable"])


def _sessions(dsn: str, select: str, application: str) -> list[tuple[Any, ...]]:
    """``SELECT select`` over the server sessions on ``dsn``'s database whose application_name is
    LIKE ``application`` (notipipe names its connections by purpose)."""
    return query(
        dsn,
        f"SELECT {select} FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE %s",
        (application,),
    )


def test_follow_yields_each_commit_once_with_its_id_as_the_twins_messages(impl: Impl, pg_dsn: str) -> None:
    create_schema(pg_dsn)
    before = write_batch(pg_dsn, ["old 0", "old 1"])
    db = impl.DatabaseConnection(as_url(pg_dsn))
    with following(db, after_id=before[0], page=2) as seen:
        assert seen.wait_for(before[1:])
        new = write_batch(pg_dsn, [f"new {i}" for i in range(5)])
        assert seen.wait_for(new)
    assert seen.ids() == before[1:] + new
    assert all(type(m) is impl.SMSMessage for m in seen.messages)
    assert [m.body for m in seen.messages] == ["old 1"] + [f"new {i}" for i in range(5)]


@READERS
def test_a_late_commit_is_not_skipped_and_a_long_transaction_elsewhere_stalls_nothing(
    impl: Impl, pg_dsn: str, pg_server: str, how: str
) -> None:
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    # A transaction in another database, with an xid, left open: it holds back the oldest
    # running transaction server-wide, which a fence below pg_snapshot_xmin waits for.
    with reading(db, how) as seen, psycopg.connect(pg_server) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")
        late, late_ids = begin_batch(pg_dsn, ["late 0", "late 1"])  # the lower ids, committed last
        early = write_batch(pg_dsn, ["early"])
        assert late_ids[-1] < early[0]
        assert seen.wait_for(early), "a commit did not flow while other transactions stayed open"
        commit_batch(late)
        assert seen.wait_for(late_ids), "a late commit with lower ids was skipped"
        after = write_batch(pg_dsn, ["after"])
        assert seen.wait_for(after)
        elsewhere.rollback()
    ids = seen.ids()
    assert sorted(ids) == sorted(late_ids + early + after), "a row was delivered twice"
    assert ids.index(late_ids[0]) < ids.index(late_ids[1]), "one writer's rows out of save order"


@READERS
def test_a_terminated_listening_connection_is_remade_and_caught_up_without_a_wakeup(
    impl: Impl, pg_dsn: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_schema(pg_dsn)
    # No safety-net poll within the test's patience: only the reconnection can find the row.
    monkeypatch.setattr("notipipe._database.DURABLE_POLL", 120.0)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    with reading(db, how, poll=120.0) as seen:
        first = write_batch(pg_dsn, ["first"])
        assert seen.wait_for(first)
        silent = write_batch(pg_dsn, ["silent"], notify=False)
        killed = _sessions(pg_dsn, "pg_terminate_backend(pid)", "notipipe listen%")
        assert killed == [(True,)]
        assert seen.wait_for(silent), "not caught up after the listening connection was cut"
        # The reader may catch up before it listens again: once it does, and only then, a new
        # alert must arrive by its wake-up (the poll is far beyond the test's patience).
        relistening = wait_until(
            lambda: _sessions(pg_dsn, "count(*)", "notipipe listen%") == [(1,)], 30, 0.05
        )
        assert relistening, "the listening connection was not remade"
        later = write_batch(pg_dsn, ["later"])
        assert seen.wait_for(later), "no wake-up on the new listening connection"
    assert seen.ids() == first + silent + later


@pytest.mark.thread_unsafe(reason="opens the DatabaseConnection singleton")
@READERS
def test_an_unreachable_listener_is_retried_with_backoff_while_the_reads_go_on(
    impl: Impl, pg_dsn: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe._storage.postgresql import follow as _pg_follow

    create_schema(pg_dsn)
    real_connect = _pg_follow.connect
    attempts: list[float] = []
    lock, refusing = threading.Lock(), threading.Event()

    def connect(dsn: str, purpose: str) -> Any:
        if purpose == _pg_follow.LISTENER_NAME:
            with lock:
                attempts.append(time.monotonic())
                first = len(attempts) == 1
            if not first:  # the reads connect as before; only listening is refused
                refusing.set()
                raise psycopg.OperationalError("listening refused by the test")
        return real_connect(dsn, purpose)

    monkeypatch.setattr(_pg_follow, "connect", connect)
    monkeypatch.setattr("notipipe._database.DURABLE_POLL", 0.5)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    with reading(db, how, poll=0.5) as seen:
        first = write_batch(pg_dsn, ["first"])
        assert seen.wait_for(first)
        _sessions(pg_dsn, "pg_terminate_backend(pid)", "notipipe listen%")
        assert refusing.wait(30), "the listening connection was not remade"
        with lock:
            since = attempts[-1]
        threading.Event().wait(1.0)  # a window to count the attempts in, not a synchronisation
        with lock:
            within = [t for t in attempts if since < t <= since + 1.0]
        later = write_batch(pg_dsn, ["later"])  # still found, by the poll
        assert seen.wait_for(later)
    assert seen.ids() == first + later
    assert len(within) <= 8, f"{len(within)} attempts to listen in one second: no backoff"


@pytest.mark.thread_unsafe(reason="opens the DatabaseConnection singleton")
def test_follow_on_a_sqlite_file_yields_what_another_connection_stores(impl: Impl, tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    db = impl.DatabaseConnection(path)
    db.save(impl.SMSMessage("+15550100", "before"), durable=True)
    with following(db, poll=0.05) as seen:
        assert seen.wait_for([1])
        db.save_many([impl.SMSMessage("+15550100", f"m{i}") for i in range(3)], durable=True)
        assert seen.wait_for([2, 3, 4])
    assert seen.ids() == [1, 2, 3, 4]
    assert all(type(m) is impl.SMSMessage for m in seen.messages)


def test_follow_ends_when_its_iterator_is_closed(impl: Impl, pg_dsn: str) -> None:
    create_schema(pg_dsn)
    ids = write_batch(pg_dsn, ["a"])
    db = impl.DatabaseConnection(as_url(pg_dsn))
    pages = db.follow()
    assert [m.id for m in next(pages)] == ids
    pages.close()  # the listening and reading connections go with it
    left = _sessions(pg_dsn, "count(*)", "notipipe%")
    assert left == [(0,)]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"after_id": -1}, "after_id must be a non-negative int"),
        ({"page": 0}, "page must be a positive int"),
        ({"poll": 0}, "poll must be more than 0"),
        ({"poll": float("nan")}, "poll must be more than 0"),
    ],
)
def test_follow_checks_its_arguments_at_the_call(db: Any, options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        db.follow(**options)


@pytest.mark.parametrize(
    ("stopped_by", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_tail_follow_on_postgresql_prints_each_commit_including_late_ones(
    pg_dsn: str, stopped_by: signal.Signals, status: int
) -> None:
    create_schema(pg_dsn)
    old = write_batch(pg_dsn, ["old 0", "old 1"])
    env = {k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"}
    tail = subprocess.Popen(
        with_sigint(
            [sys.executable, "-m", "notipipe", "tail", "--follow", "-n", "1", "--db", as_url(pg_dsn)]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert tail.stdout is not None
        assert tail.stdout.readline().startswith(f"#{old[1]} ")
        late, late_ids = begin_batch(pg_dsn, ["late"])
        early = write_batch(pg_dsn, ["early"])
        assert tail.stdout.readline().startswith(f"#{early[0]} ")
        commit_batch(late)
        assert tail.stdout.readline().startswith(f"#{late_ids[0]} ")
        tail.send_signal(stopped_by)  # Ctrl-C, or kill PID: the same way out
        _, err = tail.communicate(timeout=30)
        assert tail.returncode == status, err
        assert err == ""
    finally:
        kill(tail)
