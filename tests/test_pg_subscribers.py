"""Durable named subscribers against a real PostgreSQL server: every committed alert from every
writer process, at least once, none skipped, each writer's in order; a crash redelivers one page
and misses nothing; one holder at a time, a standby takes over; unsubscribe stops."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from notipipe._errors import ConfigurationError
from notipipe._storage.postgresql.read_ahead import READER_NAME
from notipipe._storage.postgresql.schema import MESSAGES
from notipipe._storage.postgresql.subscribers import list_subscriptions
from tests._holders import holder_process, stop_holder
from tests._pg_rows import Seen, create_schema, write_batch, write_many
from tests._pg_util import as_url, query
from tests._processes import spawn, wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="waits on child processes and the DatabaseConnection singleton"),
]

#: The module whose ``subscriber`` program holds a durable name in another process.
CHILDREN = "tests._pg_children"


def _delivered(out: Path) -> list[tuple[int, str, str]]:
    """``(id, class name, body)`` per line the subscriber wrote, in delivery order."""
    if not out.exists():
        return []
    lines = out.read_text().splitlines()
    return [(int(i), cls, body) for i, cls, body in (line.split(" ", 2) for line in lines)]


def _wait_delivered(out: Path, ids: set[int], timeout: float = 60.0) -> list[tuple[int, str, str]]:
    """What the subscriber wrote once it holds every id in ``ids``, or at ``timeout``."""
    got: list[tuple[int, str, str]] = []

    def has_all() -> bool:  # another process writes the file: polled, with a deadline
        got[:] = _delivered(out)
        return ids <= {i for i, _, _ in got}

    wait_until(has_all, timeout, interval=0.05)
    return got


def _stored(dsn: str) -> dict[int, str]:
    return {int(i): str(b) for i, b in query(dsn, f"SELECT id, body FROM {MESSAGES}")}


def _caught_up(dsn: str, name: str, timeout: float = 30.0) -> bool:
    """True once the durable subscription ``name`` has nothing undelivered; False at ``timeout``."""

    def caught_up() -> bool:
        state = {s.name: s for s in list_subscriptions(as_url(dsn))}
        return name in state and state[name].undelivered == 0

    return wait_until(caught_up, timeout, interval=0.05)


def test_four_writers_committing_in_random_order_reach_a_subscriber_process_none_skipped(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    """The issue's done-when: 4 writer processes that pause before commit, a durable subscriber in
    another process; every stored alert reaches it with its id, none skipped, each writer's in order."""
    create_schema(pg_dsn)
    out = tmp_path / "delivered"
    with holder_process(impl, CHILDREN, as_url(pg_dsn), "done-when", out) as sub:
        writers = [
            spawn(impl, "tests._pg_children", "writer", pg_dsn, f"w{k}", "25", "20", str(k)) for k in range(4)
        ]
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err
        stored = _stored(pg_dsn)
        assert len(stored) == 4 * 25 * 20
        got = _wait_delivered(out, set(stored))
        stop_holder(sub)
    ids = [i for i, _, _ in got]
    assert set(ids) == set(stored), f"{len(set(stored) - set(ids))} stored alerts never delivered"
    assert len(ids) == len(set(ids)), "an alert was delivered twice without a crash"
    assert all(body == stored[i] for i, _, body in got), "an alert delivered under another id"
    assert {cls for _, cls, _ in got} == {impl.SMSMessage.__name__}
    for k in range(4):
        seqs = [int(body.split()[1]) for _, _, body in got if body.startswith(f"w{k} ")]
        assert seqs == list(range(500)), f"writer w{k}'s alerts out of save order"
    # The random pauses really made lower ids commit later: the delivery order is not id order.
    assert ids != sorted(ids)


def test_four_notipipe_run_processes_reach_a_subscriber_process_each_in_its_save_order(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    """The same with the real writers: four ``notipipe run --db postgresql://...`` processes."""
    create_schema(pg_dsn)
    url, out = as_url(pg_dsn), tmp_path / "delivered"
    with holder_process(impl, CHILDREN, url, "runs", out) as sub:
        runs = [
            spawn(
                impl,
                "notipipe",
                "run",
                "--db",
                url,
                "-n",
                "3000",
                "-t",
                "2",
                "--chunk",
                "100",
                "--batch-size",
                "500",
                "--max-delay",
                "0.01",
                "--seed",
                str(k),
                "--progress",
                "none",
            )
            for k in range(4)
        ]
        for run in runs:
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
        origin = {int(i): int(p) for i, p in query(pg_dsn, f"SELECT id, origin_pid FROM {MESSAGES}")}
        assert len(origin) == 4 * 3000
        got = _wait_delivered(out, set(origin))
        stop_holder(sub)
    ids = [i for i, _, _ in got]
    assert set(ids) == set(origin), f"{len(set(origin) - set(ids))} stored alerts never delivered"
    assert len(ids) == len(set(ids)), "an alert was delivered twice without a crash"
    assert len(set(origin.values())) == 4
    for pid in set(origin.values()):
        mine = [i for i in ids if origin[i] == pid]
        assert mine == sorted(mine), f"writer {pid}'s alerts out of its save order"


def test_a_subscriber_killed_between_update_and_its_cursor_commit_gets_that_page_again(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    create_schema(pg_dsn)
    url, out = as_url(pg_dsn), tmp_path / "delivered"
    with holder_process(impl, CHILDREN, url, "crash", out, "120", "50") as first:
        ids = write_batch(pg_dsn, [f"m {i}" for i in range(300)])  # one commit: pages of 50 by id
        first.wait(timeout=60)
        assert first.returncode == -signal.SIGKILL
    before = [i for i, _, _ in _delivered(out)]
    assert before == ids[:120]
    out.unlink()
    with holder_process(impl, CHILDREN, url, "crash", out) as second:
        after = [i for i, _, _ in _wait_delivered(out, set(ids[120:]))]
        stop_holder(second)
    # Pages 1 and 2 were committed; page 3 (ids[100:150]) was being delivered: all of it again.
    assert after == ids[100:], "the page in flight was not redelivered whole, or more came again"


def test_a_standby_takes_over_when_the_holder_dies_and_never_delivers_before(
    impl: Impl, pg_dsn: str, tmp_path: Path
) -> None:
    create_schema(pg_dsn)
    url, out = as_url(pg_dsn), tmp_path / "delivered"
    db = impl.DatabaseConnection(url)
    standby = Seen()
    with holder_process(impl, CHILDREN, url, "shared", out) as holder:
        first = write_batch(pg_dsn, ["first"])
        assert [i for i, _, _ in _wait_delivered(out, set(first))] == first
        assert db.subscribe(standby, durable_name="shared")
        second = write_batch(pg_dsn, ["second"])
        assert [i for i, _, _ in _wait_delivered(out, set(second))] == first + second
        assert _caught_up(pg_dsn, "shared")
        (state,) = list_subscriptions(url)
        assert state.holder is not None
        assert state.holder.startswith(f"{holder.pid}@")
        holder.kill()
        holder.wait(timeout=30)
        third = write_batch(pg_dsn, ["third"])
        assert standby.wait_for(third), "the standby did not take over"
    assert standby.ids() == third, "the standby delivered while the holder held the name"
    assert db.unsubscribe(standby)


def test_unsubscribe_stops_delivery_and_frees_the_name_which_resumes_where_it_stopped(
    impl: Impl, pg_dsn: str
) -> None:
    create_schema(pg_dsn)
    before = write_batch(pg_dsn, ["before"])  # committed before the name exists: not delivered
    db = impl.DatabaseConnection(as_url(pg_dsn))
    seen = Seen()
    assert db.subscribe(seen, durable_name="resume")
    assert not db.subscribe(seen, durable_name="resume")  # the same observer again: no change
    first = write_batch(pg_dsn, ["first"])
    assert seen.wait_for(first)
    assert db.unsubscribe(seen)
    assert not [t for t in threading.enumerate() if t.name == "notipipe-subscriber-resume"]
    (state,) = list_subscriptions(as_url(pg_dsn))
    assert state.holder is None
    assert not db.unsubscribe(seen)
    second = write_batch(pg_dsn, ["second"])
    (state,) = list_subscriptions(as_url(pg_dsn))
    assert (state.name, state.undelivered) == ("resume", 1)
    assert state.oldest_age is not None
    assert state.oldest_age >= 0
    again = Seen()
    assert db.subscribe(again, durable_name="resume")
    assert again.wait_for(second)
    assert seen.ids() == first
    assert before[0] not in again.ids()
    db.close()  # stops the durable subscriptions too
    assert not [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]
    assert again.ids() == second


def _read_ahead_sessions(dsn: str) -> list[int]:
    """The server processes of this process's read-ahead connections."""
    rows = query(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"{READER_NAME} {os.getpid()}@%",),
    )
    return [int(r[0]) for r in rows]


def test_unsubscribe_leaves_no_reading_thread_nor_connection(impl: Impl, pg_dsn: str) -> None:
    """The next page is read by a thread and a connection of the subscription's own: the thread
    is gone the moment ``unsubscribe`` returns, and its connection closed (its server process
    ends soon after), whether the reader was waiting for a wake-up or for the observer to take
    its page."""
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    for backlog in (0, 5_000):  # idle: waiting for a wake-up; busy: a page waiting to be taken
        seen = _Gate(Seen(), at=1)
        assert db.subscribe(seen, durable_name="ahead")
        ids = write_many(pg_dsn, max(backlog, 1))
        assert seen.reached.wait(30)
        assert wait_until(lambda: len(_read_ahead_sessions(pg_dsn)) == 1, 30)
        if backlog:
            assert wait_until(_a_reader_holds_a_page, 30), "the reader never read ahead"
        seen.go.set()
        assert db.unsubscribe(seen)
        assert not [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]
        assert wait_until(lambda: _read_ahead_sessions(pg_dsn) == [], 10)
        assert seen.inner.ids() == ids[: len(seen.inner.ids())]
    db.close()


class _Gate:
    """An observer that stops in its ``at``-th call until ``go`` is set (``reached`` says it is
    there), passing each message on to ``inner``."""

    def __init__(self, inner: Seen, at: int) -> None:
        self.inner, self._at, self._calls = inner, at, 0
        self.reached, self.go = threading.Event(), threading.Event()

    def update(self, message: Any) -> None:
        self.inner.update(message)
        self._calls += 1
        if self._calls == self._at:
            self.reached.set()
            self.go.wait(60)


def _a_reader_holds_a_page() -> bool:
    """True once a reading thread has read a page and waits for the delivery to take it."""
    return any(t.name.endswith("-read-ahead") and "_put" in _frames_of(t) for t in threading.enumerate())


def _frames_of(thread: threading.Thread) -> list[str]:
    """The names of the functions ``thread`` is in, innermost first."""
    frame = sys._current_frames().get(thread.ident or 0)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def test_a_reading_connection_ended_mid_backlog_delivers_every_alert_once(impl: Impl, pg_dsn: str) -> None:
    """An operator ends the read-ahead session (``pg_terminate_backend``) while a page waits for
    the observer: the subscription reconnects and goes on from its committed cursor, every alert
    of the backlog delivered exactly once, in order."""
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    seen = _Gate(Seen(), at=2_500)  # in the third page
    assert db.subscribe(seen, durable_name="cut-reader")
    try:
        ids = write_many(pg_dsn, 10_000)
        assert seen.reached.wait(60)
        assert wait_until(lambda: len(_read_ahead_sessions(pg_dsn)) == 1, 30)
        (reader,) = _read_ahead_sessions(pg_dsn)
        assert query(pg_dsn, "SELECT pg_terminate_backend(%s, 10000)", (reader,)) == [(True,)]
        seen.go.set()
        delivered = seen.inner
        assert wait_until(lambda: len(delivered.ids()) >= len(ids), 60, interval=0.05), (
            "delivery stopped with the reading connection"
        )
        assert _caught_up(pg_dsn, "cut-reader")
        assert seen.inner.ids() == ids
    finally:
        seen.go.set()
        db.unsubscribe(seen)
        db.close()


def _holder_sessions(dsn: str) -> set[int]:
    """The server processes of this process's holding (or waiting) connections."""
    rows = query(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"notipipe subscriber {os.getpid()}@%",),
    )
    return {int(r[0]) for r in rows}


def test_a_lost_reading_connection_is_made_again_while_the_holder_keeps_its_session(
    impl: Impl, pg_dsn: str
) -> None:
    """An operator ends the read-ahead session again and again (``pg_terminate_backend``, every
    50 ms for 1.5 s): the reader makes its connection again each time, with backoff, and the
    holder keeps its session and the name throughout; then delivery goes on."""
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    seen = Seen()
    assert db.subscribe(seen, durable_name="kept")
    try:
        assert wait_until(lambda: len(_read_ahead_sessions(pg_dsn)) == 1, 30)
        assert wait_until(lambda: len(_holder_sessions(pg_dsn)) == 1, 30)
        (holder,) = _holder_sessions(pg_dsn)
        seen_holders: set[int] = set()
        ended = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for reader in _read_ahead_sessions(pg_dsn):
                ended += query(pg_dsn, "SELECT pg_terminate_backend(%s)", (reader,)) == [(True,)]
            seen_holders |= _holder_sessions(pg_dsn)
            time.sleep(0.05)  # the operator's pace
        assert ended >= 3, "the premise: the reading connection was ended again and again"
        assert seen_holders == {holder}, "the holder lost its session with the reading connection"
        ids = write_batch(pg_dsn, ["after the cuts"])
        assert seen.wait_for(ids, timeout=30)
    finally:
        db.unsubscribe(seen)
        db.close()


def test_an_operator_s_table_lock_does_not_hold_unsubscribe_up(impl: Impl, pg_dsn: str) -> None:
    """An operator holds ``notipipe_messages`` locked (``LOCK TABLE``, as a schema change does)
    while the reader's page read waits for it: ``unsubscribe`` cancels that read and returns,
    well before the lock is released."""
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    seen = Seen()
    assert db.subscribe(seen, durable_name="locked-out")
    operator = psycopg.connect(pg_dsn)
    operator.execute(f"LOCK TABLE {MESSAGES} IN ACCESS EXCLUSIVE MODE")
    # Ends the operator's session (and its lock) later: a broken unsubscribe then returns.
    end = (pg_dsn, "SELECT pg_terminate_backend(%s)", (operator.info.backend_pid,))
    release = threading.Timer(10, query, end)
    release.start()
    try:
        # The reader reads at least every poll seconds, and then waits for the lock.
        assert wait_until(
            lambda: (
                query(
                    pg_dsn,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
                    "AND wait_event_type = 'Lock'",
                    (f"{READER_NAME} {os.getpid()}@%",),
                )
                == [(1,)]
            ),
            30,
        ), "the premise: the reader waits for the operator's lock"
        began = time.monotonic()
        assert db.unsubscribe(seen)
        took = time.monotonic() - began
    finally:
        release.cancel()
        operator.close()  # rolls back: the lock goes (if the timer has not ended it already)
    assert took < 5, f"unsubscribe waited {took:.1f} s for the operator's lock"
    assert not [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]
    db.close()


def test_the_name_is_free_the_moment_unsubscribe_returns(impl: Impl, pg_dsn: str) -> None:
    # Another process taking the name over must find it free at once, every time: not once the
    # server has got round to ending the closed session.
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    for _ in range(50):
        seen = Seen()
        assert db.subscribe(seen, durable_name="handover")
        assert wait_until(lambda: list_subscriptions(as_url(pg_dsn))[0].holder is not None, 30)
        assert db.unsubscribe(seen)
        (state,) = list_subscriptions(as_url(pg_dsn))
        assert state.holder is None
    db.close()


class _RaisingOn(Seen):
    """An observer that takes every message, then raises ``error(body)`` on those whose body
    starts with ``prefix``."""

    def __init__(self, prefix: str, error: type[BaseException]) -> None:
        super().__init__()
        self._prefix, self._error = prefix, error

    def update(self, message: Any) -> None:
        super().update(message)
        if message.body.startswith(self._prefix):
            raise self._error(message.body)


def _errors_reported(db: Any) -> list[tuple[Any, Any, Exception]]:
    """What ``db``'s error handler is given from now on, ``(observer, message, error)`` in order."""
    reported: list[tuple[Any, Any, Exception]] = []
    db.error_handler = lambda observer, message, error: reported.append((observer, message, error))
    return reported


def test_a_failing_observer_goes_to_the_error_handler_and_delivery_goes_on(impl: Impl, pg_dsn: str) -> None:
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    reported = _errors_reported(db)

    picky = _RaisingOn("bad", ValueError)
    assert db.subscribe(picky, durable_name="picky")
    ids = write_batch(pg_dsn, ["good 0", "bad 1", "good 2", "bad 3"])
    more = write_batch(pg_dsn, ["good 4"])
    assert picky.wait_for(ids + more)
    assert db.unsubscribe(picky)
    assert [(o, m.id, str(e)) for o, m, e in reported] == [(picky, ids[1], "bad 1"), (picky, ids[3], "bad 3")]
    assert picky.ids() == ids + more


def _subscriber_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]


def test_a_stored_row_that_is_no_valid_alert_is_reported_skipped_and_delivery_goes_on(
    impl: Impl, pg_dsn: str
) -> None:
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    reported = _errors_reported(db)
    seen = Seen()
    assert db.subscribe(seen, durable_name="strict")
    try:
        before = write_batch(pg_dsn, ["before"])
        with psycopg.connect(pg_dsn, autocommit=True) as other_tool:  # no priority 99 in notipipe
            got = other_tool.execute(
                f"INSERT INTO {MESSAGES} (kind, created_at, priority, address, subject, body, origin_host, "
                "origin_pid) VALUES ('sms', 0, 99, '+15550100', '', 'bad', 'elsewhere', 1) RETURNING id"
            ).fetchone()
            assert got is not None
            bad = int(got[0])
        after = write_batch(pg_dsn, ["after"])
        assert seen.wait_for(before + after), "delivery ended at the bad row"
        assert sorted(t.name for t in _subscriber_threads()) == [
            "notipipe-subscriber-strict",
            "notipipe-subscriber-strict-read-ahead",
        ]
    finally:
        assert db.unsubscribe(seen)
    assert seen.ids() == before + after
    assert [(o, m[0], type(e)) for o, m, e in reported] == [(seen, bad, ValueError)]
    assert "priority" in str(reported[0][2])
    # The cursor moved past the bad row: a new holder of the name does not meet it again.
    again = Seen()
    reported.clear()
    assert db.subscribe(again, durable_name="strict")
    later = write_batch(pg_dsn, ["later"])
    assert again.wait_for(later)
    assert db.unsubscribe(again)
    assert again.ids() == later
    assert reported == []


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_an_observer_raising_a_base_exception_is_reported_and_delivery_goes_on(
    impl: Impl, pg_dsn: str, raised: type[BaseException]
) -> None:
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    reported = _errors_reported(db)

    quitter = _RaisingOn("quit", raised)
    assert db.subscribe(quitter, durable_name="quitter")
    try:
        ids = write_batch(pg_dsn, ["good 0", "quit 1", "good 2"])
        more = write_batch(pg_dsn, ["good 3"])
        assert quitter.wait_for(ids + more), "delivery ended at the observer's exception"
    finally:
        assert db.unsubscribe(quitter)
    assert quitter.ids() == ids + more
    assert [(o, m.id, type(e), type(e.__cause__)) for o, m, e in reported] == [
        (quitter, ids[1], RuntimeError, raised)
    ]
    assert str(reported[0][2]) == f"update raised {raised.__name__}: quit 1"


def test_any_other_error_of_the_delivery_thread_is_logged_and_retried(
    impl: Impl, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from notipipe._storage.postgresql import subscribers as _pg_subscribers

    create_schema(pg_dsn)
    real_load = _pg_subscribers.DurableSubscription._load
    failed_once = threading.Event()

    def load(self: Any, *args: Any) -> Any:
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("a bug in the delivery thread")
        return real_load(self, *args)

    monkeypatch.setattr(_pg_subscribers.DurableSubscription, "_load", load)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    seen = Seen()
    with caplog.at_level("ERROR", logger="notipipe"):
        assert db.subscribe(seen, durable_name="retried")
        try:
            assert failed_once.wait(30)
            ids = write_batch(pg_dsn, ["after the error"])
            assert seen.wait_for(ids), "the delivery thread ended at the error"
        finally:
            assert db.unsubscribe(seen)
    assert seen.ids() == ids
    logged = [r for r in caplog.records if "'retried'" in r.getMessage() and "retrying" in r.getMessage()]
    assert [str(r.exc_info[1]) for r in logged if r.exc_info] == ["a bug in the delivery thread"]


def test_subscribe_racing_close_leaves_no_subscriber_thread(
    impl: Impl, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notipipe._errors import StorageClosedError
    from notipipe._storage.postgresql import subscribers as _pg_subscribers

    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))
    constructed, release = threading.Event(), threading.Event()
    made: list[Any] = []

    class Paused(_pg_subscribers.DurableSubscription):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)
            constructed.set()
            assert release.wait(30)

    monkeypatch.setattr(_pg_subscribers, "DurableSubscription", Paused)
    outcome: list[object] = []

    def subscribe() -> None:
        try:
            outcome.append(db.subscribe(Seen(), durable_name="racer"))
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome.append(error)

    thread = threading.Thread(target=subscribe)
    thread.start()
    try:
        assert constructed.wait(30)
        db.close()  # while subscribe is between its check and its append
    finally:
        release.set()
        thread.join(30)
    try:
        assert not thread.is_alive()
        assert len(outcome) == 1, outcome
        assert isinstance(outcome[0], StorageClosedError), outcome
        assert _subscriber_threads() == []
    finally:
        for subscription in made:  # a leaked one would keep the name's lock for the session
            subscription.stop()


def test_durable_subscribers_need_postgresql_and_a_name(db: Any) -> None:
    with pytest.raises(
        ConfigurationError, match="durable subscribers need a backend that keeps durable names"
    ):
        db.subscribe(Seen(), durable_name="eu-dashboard")
    with pytest.raises(ValueError, match="durable_name must be a non-empty printable str"):
        db.subscribe(Seen(), durable_name="")
    assert db.observers == ()


def test_the_subscriptions_command_lists_each_name_with_its_lag_and_holder(
    impl: Impl, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from notipipe.cli import main

    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    assert main(["subscriptions", "--db", url]) == 0
    assert capsys.readouterr().out == "no durable subscriptions\n"
    db = impl.DatabaseConnection(url)
    held, idle = Seen(), Seen()
    assert db.subscribe(held, durable_name="eu-dashboard")
    assert db.subscribe(idle, durable_name="audit")
    assert db.unsubscribe(idle)
    ids = write_batch(pg_dsn, ["a", "b"])
    assert held.wait_for(ids)
    assert _caught_up(pg_dsn, "eu-dashboard")
    assert main(["subscriptions", "--db", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "UNDELIVERED", "OLDEST", "HELD", "BY"]
    audit, eu = (line.split() for line in lines[1:])
    assert audit[:2] == ["audit", "2"]
    assert audit[-1] == "-"
    assert eu == ["eu-dashboard", "0", "-", f"{os.getpid()}@{os.uname().nodename}"]


def test_the_subscriptions_command_lines_columns_up_under_names_in_any_script(
    impl: Impl, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import unicodedata

    from notipipe.cli import main

    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    names = ["警报-仪表盘", "audit", "cafe\u0301-eu"]  # wide characters; a combining accent
    for name in names:
        observer = Seen()
        assert db.subscribe(observer, durable_name=name)
        assert db.unsubscribe(observer)
    assert main(["subscriptions", "--db", url]) == 0
    lines = capsys.readouterr().out.splitlines()

    def columns(text: str) -> int:  # as a terminal shows it
        return sum(
            0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
            for c in text
        )

    # Where "UNDELIVERED" ends, each name's figure ends too.
    edge = columns(lines[0][: lines[0].index("UNDELIVERED") + len("UNDELIVERED")])
    assert len(lines) == 1 + len(names)
    for line in lines[1:]:
        name = next(n for n in names if line.startswith(n + " "))
        lag = line[len(name) :].split()[0]
        end = line.index(lag, len(name)) + len(lag)
        assert columns(line[:end]) == edge, line


def test_the_subscriptions_command_refuses_a_sqlite_file(capsys: pytest.CaptureFixture[str]) -> None:
    from notipipe.cli import main

    assert main(["subscriptions", "--db", "alerts.db"]) == 1
    assert "durable subscribers need a backend that keeps durable names" in capsys.readouterr().err
