"""Retention: ``DatabaseConnection.prune``, the ``retention=`` option and ``notipipe prune``, on real
servers: old alerts go in small transactions while writers and a follower go on (nothing newer
than the cutoff is lost or skipped, ids never go back), durable names hear of alerts pruned
before delivery, a NATS stream loses whole chunks only."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notipipe import AlertsPrunedError
from notipipe._storage.prune import PRUNE_STEP
from tests._processes import wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="the DatabaseConnection singleton, writer threads of its own"),
]

#: Seconds in the past the old alerts were created at, and the age a prune cuts at.
OLD = 10_000.0
CUT = 1_000.0


@pytest.fixture(params=["sqlite", "postgresql", "nats"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend: a SQLite file, a PostgreSQL database, a NATS stream."""
    if request.param == "sqlite":
        return str(tmp_path / "alerts.db")
    fixture = "pg_url" if request.param == "postgresql" else "nats_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def open_db(impl: Impl) -> Iterator[Callable[..., Any]]:
    """Opens this twin's ``DatabaseConnection``; closed after the test."""
    drop(impl.DatabaseConnection)
    yield impl.DatabaseConnection
    drop(impl.DatabaseConnection)


def _emails(impl: Impl, tag: str, n: int, created_at: float | None = None) -> list[Any]:
    return [impl.EmailMessage("a@example.com", tag, f"{tag}-{i}", created_at=created_at) for i in range(n)]


def _bodies(rows: list[Any]) -> list[str]:
    return [m.body for m in rows]


def test_prune_under_writers_and_a_follower_loses_and_skips_nothing_newer(
    impl: Impl, open_db: Callable[..., Any], target: str
) -> None:
    db = open_db(target, max_delay=0.01)
    old = time.time() - OLD
    for part in range(5):  # several batches: several chunks on NATS, all older than the cutoff
        db.save_many(_emails(impl, f"old{part}", 2000, old))
        db.flush()
    before_prune = max(m.id for m in db.last(1))
    stop, quit_writers = threading.Event(), threading.Event()
    seen: list[Any] = []
    saved: list[str] = []

    def follow() -> None:
        for page in db.follow(after_id=before_prune, poll=0.05, stop=stop):
            seen.extend(page)

    def write(w: int) -> None:
        i = 0
        while not quit_writers.is_set():
            batch = [impl.EmailMessage("a@example.com", "new", f"new-{w}-{i + k}") for k in range(50)]
            db.save_many(batch)
            saved.extend(m.body for m in batch)
            i += 50
            db.flush()

    follower = threading.Thread(target=follow)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in (follower, *writers):
        t.start()
    try:
        assert wait_until(lambda: len(saved) >= 500, 60)
        pruned = db.prune(older_than=CUT)
        written_during = len(saved)
        assert wait_until(lambda: len(saved) >= written_during + 500, 60)  # writers went on
        quit_writers.set()
        for t in writers:
            t.join(60)
        db.flush()
        # the follower, running through the prune, gets every alert newer than the cutoff
        assert wait_until(lambda: len(seen) >= len(saved), 60), (len(seen), len(saved))
    finally:
        quit_writers.set()
        stop.set()
        for t in (follower, *writers):
            t.join(60)
    assert pruned == 10_000
    assert sorted(m.body for m in db.after(0, 10**6)) == sorted(saved), "an alert newer than the cutoff went"
    assert sorted(_bodies(seen)) == sorted(saved)
    if db.target.ids_follow_commits:
        ids = [m.id for m in seen]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
    # ids never go back: an alert saved after the prune takes an id above every earlier one
    newest_before = max(m.id for m in seen)
    db.save(impl.EmailMessage("a@example.com", "last", "after-prune"), durable=True)
    [last] = db.last(1)
    assert (last.body, last.id > newest_before) == ("after-prune", True)


def test_a_follower_running_through_the_prune_skips_nothing_newer(
    impl: Impl, open_db: Callable[..., Any], target: str
) -> None:
    db = open_db(target, max_delay=0.01)
    db.save_many(_emails(impl, "old", 6000, time.time() - OLD))
    db.flush()
    stop, seen = threading.Event(), []

    def follow() -> None:  # from the first stored alert: it reads while the prune deletes
        for page in db.follow(poll=0.05, stop=stop):
            seen.extend(page)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        assert wait_until(lambda: len(seen) >= 1, 60)
        new = []
        for i in range(20):  # saves interleaved with the prune's steps
            batch = _emails(impl, f"new{i}", 25)
            db.save_many(batch)
            new += [m.body for m in batch]
            if i == 10:
                db.prune(older_than=CUT)
        db.flush()
        assert wait_until(lambda: set(new) <= set(_bodies(seen)), 60), "the follower skipped newer alerts"
    finally:
        stop.set()
        follower.join(60)
    if db.target.ids_follow_commits:
        ids = [m.id for m in seen]
        assert ids == sorted(ids)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_large_prune_goes_in_small_transactions_a_writer_commits_between(
    impl: Impl, open_db: Callable[..., Any], backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = str(tmp_path / "big.db") if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
    db = open_db(url, max_delay=0.001)
    total = 30 * PRUNE_STEP
    old = time.time() - OLD
    for _ in range(total // 20_000):
        db.save_many(_emails(impl, "old", 20_000, old))
    db.flush()
    # After each of the prune's transactions, a writer commits before the prune goes on: it can
    # only if the prune holds no lock between its steps.
    steps: list[int] = []
    interleaved: list[bool] = []
    want, done, quit_ = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        i = 0
        while not quit_.is_set():
            if want.wait(0.05):
                want.clear()
                db.save(impl.EmailMessage("a@example.com", "new", f"between-{i}"), durable=True)
                i += 1
                done.set()

    def progress(n: int) -> None:
        steps.append(n)
        done.clear()
        want.set()
        # once a writer could not commit, the rest need not wait for it
        interleaved.append(done.wait(30) if all(interleaved) else False)

    w = threading.Thread(target=writer)
    w.start()
    try:
        pruned = db.prune(older_than=CUT, progress=progress)
    finally:
        quit_.set()
        w.join(60)
    assert pruned == total
    increments = [b - a for a, b in zip([0, *steps], steps, strict=False)]
    assert len(steps) >= total // PRUNE_STEP, steps[:5]
    assert max(increments) <= PRUNE_STEP
    assert all(interleaved), "a writer could not commit between the prune's transactions"
    assert db.stats().total == len(steps)  # the writer's alerts, none pruned


class _Slow:
    def __init__(self) -> None:
        self.got: list[int] = []

    def update(self, message: Any) -> None:
        self.got.append(message.id)


def test_a_durable_name_hears_once_of_alerts_pruned_before_delivery(
    impl: Impl, open_db: Callable[..., Any], pg_url: str
) -> None:
    db = open_db(pg_url)
    told: list[tuple[object, BaseException]] = []
    db.error_handler = lambda observer, message, error: told.append((message, error))
    observer = _Slow()
    assert db.subscribe(observer, durable_name="audit")
    assert db.unsubscribe(observer)  # the name stays, behind
    db.save_many(_emails(impl, "old", 300, time.time() - OLD))
    db.save_many(_emails(impl, "new", 5))
    db.flush()
    assert db.prune(older_than=CUT, keep_undelivered=True) == 0  # the name has not had them
    assert db.prune(older_than=CUT, dry_run=True) == 300
    assert db.prune(older_than=CUT) == 300
    [status] = db.subscriptions()
    assert (status.name, status.pruned, status.lag) == ("audit", 300, 5)
    assert db.subscribe(observer, durable_name="audit")
    assert wait_until(lambda: len(observer.got) == 5 and bool(told), 60)
    [(message, error)] = told
    assert isinstance(error, AlertsPrunedError)
    assert (message, error.name, error.count) == (None, "audit", 300)
    db.save_many(_emails(impl, "old", 10, time.time() - OLD))
    db.flush()
    assert wait_until(lambda: len(observer.got) == 15, 60)
    assert wait_until(lambda: db.prune(older_than=CUT, keep_undelivered=True) == 10, 60)  # delivered: they go
    assert len(told) == 1


def test_keep_undelivered_on_nats_purges_only_below_every_consumer(
    impl: Impl, open_db: Callable[..., Any], nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = open_db(nats_url)
    observer = _Slow()
    assert db.subscribe(observer, durable_name="audit")
    assert db.unsubscribe(observer)
    db.save_many(_emails(impl, "old", 30, time.time() - OLD))
    db.flush()
    assert db.prune(older_than=CUT, keep_undelivered=True) == 0
    with caplog.at_level(logging.WARNING, "notipipe"):
        assert db.prune(older_than=CUT) == 30
    assert "durable name 'audit' had not been delivered 30 alerts that were pruned" in caplog.text


def test_a_nats_stream_loses_whole_chunks_from_its_start_only(
    impl: Impl, open_db: Callable[..., Any], nats_url: str
) -> None:
    db = open_db(nats_url)
    old = time.time() - OLD
    db.save_many(_emails(impl, "a", 3, old))  # chunk 1: all old
    db.flush()
    db.save_many([*_emails(impl, "b", 2, old), impl.EmailMessage("a@example.com", "b", "b-new")])  # mixed
    db.flush()
    db.save_many(_emails(impl, "c", 4, old))  # chunk 3: all old, after a chunk that stays
    db.flush()
    assert db.prune(older_than=CUT, dry_run=True) == 3
    assert db.prune(older_than=CUT) == 3
    assert _bodies(db.after(0, 100)) == ["b-0", "b-1", "b-new", "c-0", "c-1", "c-2", "c-3"]
    assert db.prune(older_than=CUT) == 0


def test_retention_prunes_by_itself_in_the_writing_process(
    impl: Impl, open_db: Callable[..., Any], target: str
) -> None:
    if target.startswith("nats://"):
        with pytest.raises(
            ValueError, match=r"retention is a setting the nats backend does not read.*max_age"
        ):
            open_db(target, retention=3600)
        return
    db = open_db(target, retention=60)  # prunes every 6 s; the new alerts stay 60 s
    db.save_many(_emails(impl, "old", 50, time.time() - OLD))
    db.save_many(_emails(impl, "new", 5))
    db.flush()
    assert wait_until(lambda: db.stats().total == 5, 60), "retention pruned nothing"
    assert sorted(_bodies(db.last(10))) == [f"new-{i}" for i in range(5)]
    db.close()  # stops the thread


def test_retention_and_older_than_are_checked(open_db: Callable[..., Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retention must be None or more than 0"):
        open_db(str(tmp_path / "a.db"), retention=0)
    db = open_db(str(tmp_path / "b.db"))
    with pytest.raises(ValueError, match="older_than must be seconds"):
        db.prune(older_than=-1)
    assert db.prune(older_than=0) == 0  # nothing stored, nothing created
    assert not (tmp_path / "b.db").exists()


def test_the_command_prunes_and_says_how_many(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from notipipe.cli import main
    from tests.test_cli_json import check

    path = str(tmp_path / "cli.db")
    db = open_db(path)
    db.save_many(_emails(impl, "old", 40, time.time() - 8 * 86400))
    db.save_many(_emails(impl, "new", 2))
    db.close()
    assert main(["prune", "--db", path, "--older-than", "7d", "--dry-run"]) == 0
    assert "would prune 40 alerts created before " in capsys.readouterr().out
    assert main(["prune", "--db", path, "--older-than", "7d", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    summary = json.loads(line)
    check(summary, "prune")
    assert (summary["pruned"], summary["older_than_seconds"], summary["dry_run"]) == (40, 7 * 86400.0, False)
    assert main(["prune", "--db", path, "--older-than", "7d"]) == 0
    assert f"{path}: pruned 0 alerts created before " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["prune", "--db", path, "--older-than", "soon"])
    assert exit_.value.code == 2
    assert "'soon' is not an age (90s, 10m, 2h, 7d, 2w)" in capsys.readouterr().err
