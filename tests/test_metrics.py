"""``DatabaseConnection.metrics()`` and its exports: the same counts and names on every backend,
failures and drops per observer, durable lag, counts that add up under concurrent producers,
Prometheus text from a running ``notipipe serve``, OpenTelemetry through the real SDK."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import notipipe
from notipipe import Metrics, StorageClosedError, StorageError
from notipipe.metrics import collector, instrument, samples
from tests._dashboard_procs import START_TIMEOUT, children
from tests._loops import PATIENCE, Recorder, loop_thread
from tests._processes import wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="the DatabaseConnection singleton, writer threads of its own"),
]

#: The Prometheus names every backend gives (a counter's without ``_total``).
NAMES = [
    "notipipe_alerts_saved",
    "notipipe_alerts_committed",
    "notipipe_alerts_refused",
    "notipipe_queue_depth",
    "notipipe_batches_committed",
    "notipipe_commit_duration_seconds_bucket",
    "notipipe_commit_duration_seconds_sum",
    "notipipe_commit_duration_seconds_count",
    "notipipe_publisher_failures",
    "notipipe_observer_failures",
    "notipipe_observer_dropped",
    "notipipe_durable_lag",
    "notipipe_durable_oldest_age_seconds",
    "notipipe_durable_active",
]


@pytest.fixture(params=["sqlite", "postgresql", "nats"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend: a SQLite file, a PostgreSQL database, a NATS stream."""
    if request.param == "sqlite":
        return str(tmp_path / "alerts.db")
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "nats_url"))


@pytest.fixture
def open_db(impl: Impl) -> Iterator[Callable[..., Any]]:
    """Opens this twin's ``DatabaseConnection``; closed after the test."""
    drop(impl.DatabaseConnection)
    yield impl.DatabaseConnection
    drop(impl.DatabaseConnection)


def _sms(impl: Impl, n: int, tag: str = "m") -> list[Any]:
    return [impl.SMSMessage("+15551234567", f"{tag} {i}") for i in range(n)]


def _refused(m: Metrics) -> dict[str, int]:
    return dict(m.refused)


class Failing:
    def update(self, message: object) -> None:
        raise ValueError(f"cannot take {message!r}")


class Quiet:
    def update(self, message: object) -> None:
        pass


# -- counts on every backend ---------------------------------------------------------------------


def test_counts_after_save_many_and_flush_are_the_same_on_every_backend(
    impl: Impl, open_db: Callable[..., Any], target: str
) -> None:
    db = open_db(target, batch_size=100)
    before = db.metrics()  # nothing opened yet: zeros, and nothing is opened by asking
    assert (before.saved, before.committed, before.pending, before.batches) == (0, 0, 0, 0)
    for _ in range(5):
        assert db.save_many(_sms(impl, 50)) == 50
    db.save(impl.SMSMessage("+15551234567", "one more"))
    db.flush()
    m = db.metrics()
    assert (m.saved, m.committed, m.pending) == (251, 251, 0)
    assert m.backend == describe(target)
    assert 3 <= m.batches <= 251  # at most 100 a transaction
    assert m.commit_seconds.count == m.batches
    assert m.commit_seconds.counts == tuple(sorted(m.commit_seconds.counts))  # cumulative
    assert m.commit_seconds.sum > 0
    assert _refused(m) == {"invalid": 0, "closed": 0, "failing": 0, "database": 0}
    with pytest.raises(TypeError):
        db.save_many([impl.SMSMessage("+15551234567", "fine"), object()])
    with pytest.raises(TypeError):
        db.save("not an alert")
    assert _refused(db.metrics())["invalid"] == 3  # the whole batch was refused, and the one
    assert [f.name for f in samples(m)] == NAMES  # the same names on every backend
    db.close()
    with pytest.raises(StorageClosedError):
        db.save_many(_sms(impl, 7))
    after = db.metrics()
    assert _refused(after)["closed"] == 7
    assert (after.saved, after.committed) == (251, 251)


def describe(target: str) -> str:
    return notipipe.describe_target(target).backend


def test_committed_counts_only_what_is_committed(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path
) -> None:
    # Another process holds the write lock: the alerts are saved and wait; none is committed.
    path = tmp_path / "locked.db"
    db = open_db(str(path), busy_timeout=60.0)
    db.save_many(_sms(impl, 1))
    db.flush()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        db.save_many(_sms(impl, 40))
        with pytest.raises(TimeoutError):
            db.flush(timeout=0.3)  # the writer has taken the batch and waits on the lock
        m = db.metrics()
        assert (m.saved, m.committed, m.pending, m.batches) == (41, 1, 40, 1)
        other.execute("ROLLBACK")
    db.flush()
    m = db.metrics()
    assert (m.saved, m.committed, m.pending, m.batches) == (41, 41, 0, 2)


def test_an_alert_is_pending_or_committed_never_both(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path
) -> None:
    # A committed batch is counted as committed at once, though its after_commit observers
    # still hear of it: meanwhile it is pending no more, or the two would add up to more than
    # was saved.
    db = open_db(str(tmp_path / "after.db"), deliver="after_commit")
    reached, release = threading.Event(), threading.Event()

    class Slow:
        def update(self, message: object) -> None:
            reached.set()
            release.wait(PATIENCE)

    db.subscribe(Slow())
    try:
        db.save_many(_sms(impl, 5))
        assert reached.wait(PATIENCE), "the writer never delivered the committed batch"
        m = db.metrics()
        assert (m.saved, m.committed, m.pending) == (5, 5, 0)
    finally:
        release.set()
    db.flush()


def _change(path: Path, sql: str) -> None:
    """What an operator's tool does to the file: one statement, committed."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(sql)
        conn.commit()


def test_rows_the_database_refuses_are_counted_as_refused_not_committed(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rule.db"
    db = open_db(str(path))
    db.save_many(_sms(impl, 2, "ok"))
    db.flush()
    _change(
        path,
        "CREATE TRIGGER no_bad BEFORE INSERT ON messages WHEN NEW.body LIKE 'bad%'"
        " BEGIN SELECT RAISE(ABORT, 'bad alerts refused'); END",
    )
    with caplog.at_level(logging.CRITICAL, logger="notipipe"):
        db.save_many([*_sms(impl, 3, "bad"), *_sms(impl, 4, "ok again")])
        with pytest.raises(StorageError, match=r"3 alert\(s\) could not be stored"):
            db.flush()
    m = db.metrics()
    assert (m.saved, m.committed, m.pending) == (9, 6, 0)
    assert _refused(m)["database"] == 3


def test_alerts_a_failing_database_cannot_take_are_counted_as_refused_failing(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every row refused (the probes too): the writer retries, the queue fills, and a save that
    # meets the full queue while writes keep failing is refused, and counted so.
    path = tmp_path / "failing.db"
    db = open_db(str(path), batch_size=1)
    db.save_many(_sms(impl, 1))
    db.flush()
    _change(
        path,
        "CREATE TRIGGER maintenance BEFORE INSERT ON messages"
        " BEGIN SELECT RAISE(ABORT, 'maintenance: no inserts'); END",
    )
    with caplog.at_level(logging.CRITICAL, logger="notipipe"):
        for _ in range(4):  # max_pending: four batches of one
            db.save(impl.SMSMessage("+15551234567", "waits"))
        with pytest.raises(StorageError, match="maintenance: no inserts"):
            db.save_many(_sms(impl, 3))
        m = db.metrics()
        assert (m.saved, m.committed, m.pending) == (5, 1, 4)
        assert _refused(m) == {"invalid": 0, "closed": 0, "failing": 3, "database": 0}
        _change(path, "DROP TRIGGER maintenance")
        db.flush()
    assert (db.metrics().committed, db.metrics().pending) == (5, 0)


# -- observers -------------------------------------------------------------------------------------


def test_failures_and_drops_are_counted_per_observer_under_bounded_labels(
    impl: Impl, open_db: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    db = open_db(":memory:")
    first, second, quiet = Failing(), Failing(), Quiet()
    for observer in (first, quiet, second):
        db.subscribe(observer)
    told: list[object] = []
    recorder = Recorder(expected=2)
    with caplog.at_level(logging.CRITICAL, logger="notipipe"), loop_thread() as lt:
        db.subscribe(recorder, loop=lt.loop, queue_size=2, overflow="drop_oldest")
        gate = lt.block()
        for i in range(7):
            db.notify_all(i)
        gate.set()
        assert recorder.done.wait(PATIENCE)
        db.error_handler = lambda observer, message, error: told.append(observer)
        db.notify_all("with a handler of its own")  # counted too, not only by the default handler
        m = db.metrics()
        db.unsubscribe(recorder)
    here = f"{__name__}"
    assert [(o.label, o.failures, o.dropped) for o in m.observers] == [
        (f"{here}.Failing#0", 8, 0),
        (f"{here}.Quiet#0", 0, 0),
        (f"{here}.Failing#1", 8, 0),
        ("tests._loops.Recorder#0", 0, 5),
    ]
    assert m.failures == 16 == db.failures
    assert told == [first, second]
    # A label stays with its observer: the second Failing keeps #1 when the first leaves (its
    # counter's series would jump from 8 to 8 + the first's, or reset, if passed on), and a
    # later one takes the lowest label free, from 0.
    db.unsubscribe(first)
    third = Failing()
    db.subscribe(third)
    with caplog.at_level(logging.CRITICAL, logger="notipipe"):
        db.notify_all("once more")
    assert [(o.label, o.failures) for o in db.metrics().observers] == [
        (f"{here}.Quiet#0", 0),
        (f"{here}.Failing#1", 9),
        (f"{here}.Failing#0", 1),
    ]
    assert db.metrics().failures == 18  # the publisher's total keeps the unsubscribed one's


# -- durable lag -----------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "nats"])
def durable_target(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "nats_url"))


def test_durable_lag_per_name_is_read_at_the_snapshot(
    impl: Impl, open_db: Callable[..., Any], durable_target: str
) -> None:
    db = open_db(durable_target)
    seen = threading.Event()

    class Seen:
        def update(self, message: object) -> None:
            seen.set()

    held = Seen()
    assert db.subscribe(held, durable_name="audit")
    assert db.unsubscribe(held)  # the name stays, at its position: nothing delivered since
    db.save_many(_sms(impl, 30))
    db.flush()
    lag = {d.name: d for d in db.metrics().durable}
    assert lag["audit"].lag == 30  # (its holder: NATS forgets one only once its pin expires)
    assert db.subscribe(held, durable_name="audit")
    assert seen.wait(PATIENCE)
    assert wait_until(lambda: {d.name: d.lag for d in db.metrics().durable} == {"audit": 0}, PATIENCE)
    assert {d.name: d.active for d in db.metrics().durable} == {"audit": True}
    assert db.unsubscribe(held)


def test_a_sqlite_file_reports_no_durable_names(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path
) -> None:
    db = open_db(str(tmp_path / "a.db"))
    assert db.metrics().durable == ()


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrent_producers_counts_add_up_exactly(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path
) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: a lost update shows
    try:
        db = open_db(str(tmp_path / "threads.db"), batch_size=64)
        threads, rounds, size = 8, 60, 7
        start = threading.Barrier(threads + 1)
        seen: list[tuple[int, int]] = []
        sums: list[int] = []  # saved - committed - pending - refused by the database: always 0
        done = threading.Event()

        def produce() -> None:
            start.wait()
            for i in range(rounds):
                db.save_many(_sms(impl, size))
                db.save(impl.SMSMessage("+15551234567", f"single {i}"))

        def watch() -> None:  # the counters never go back, and never commit more than saved
            while not done.is_set():
                m = db.metrics()
                seen.append((m.saved, m.committed))
                sums.append(m.saved - m.committed - m.pending - _refused(m)["database"])

        workers = [threading.Thread(target=produce) for _ in range(threads)]
        watcher = threading.Thread(target=watch)
        for t in [*workers, watcher]:
            t.start()
        start.wait()
        for t in workers:
            t.join()
        db.flush()
        done.set()
        watcher.join()
    finally:
        sys.setswitchinterval(old)
    total = threads * rounds * (size + 1)
    m = db.metrics()
    assert (m.saved, m.committed, m.pending) == (total, total, 0)
    assert sum(db.count_by_kind().values()) == total
    assert all(committed <= saved for saved, committed in seen)
    assert set(sums) == {0}
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert [c for _, c in seen] == sorted(c for _, c in seen)


# -- Prometheus ------------------------------------------------------------------------------------


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {labels: value}}`` of Prometheus text, by prometheus_client's parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_the_collector_reads_the_snapshot_at_each_scrape(impl: Impl, open_db: Callable[..., Any]) -> None:
    db = open_db(":memory:")
    registry = CollectorRegistry()
    registry.register(collector(db))
    db.subscribe(Failing())
    db.error_handler = lambda *_: None
    db.save_many(_sms(impl, 12))
    db.flush()
    scraped = _families(generate_latest(registry).decode())
    assert scraped["notipipe_alerts_saved_total"] == {(): 12}
    assert scraped["notipipe_alerts_committed_total"] == {(): 12}
    assert scraped["notipipe_queue_depth"] == {(): 0}
    assert scraped["notipipe_observer_failures_total"] == {(("observer", f"{__name__}.Failing#0"),): 12}
    assert scraped["notipipe_commit_duration_seconds_count"] == {(): db.metrics().batches}
    assert scraped["notipipe_commit_duration_seconds_bucket"][(("le", "+Inf"),)] == db.metrics().batches
    db.save_many(_sms(impl, 3))
    db.flush()
    assert _families(generate_latest(registry).decode())["notipipe_alerts_saved_total"] == {(): 15}


def _scrape(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=START_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _stored(url: str) -> float:
    status, text = _scrape(url)
    assert status == 200, text
    return sum(_families(text).get("notipipe_stored_alerts", {}).values())


def test_a_running_serve_answers_metrics_in_prometheus_text(
    impl: Impl, open_db: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "served.db"
    db = open_db(str(path))
    db.save_many(_sms(impl, 5))
    db.flush()
    with children() as kids:
        _, page = kids.serve(path)
        url = page.rstrip("/") + "/metrics"
        assert wait_until(lambda: _stored(url) == 5, START_TIMEOUT)
        db.save_many([*_sms(impl, 40), *(impl.EmailMessage("a@example.com", "s", "b") for _ in range(3))])
        db.flush()
        assert wait_until(lambda: _stored(url) == 48, START_TIMEOUT)
        status, text = _scrape(url)
    assert status == 200
    scraped = _families(text)
    assert scraped["notipipe_stored_alerts"] == {(("kind", "email"),): 3, (("kind", "sms"),): 45}
    # The server's own connection reads only: it saved nothing, and says so in every family.
    assert scraped["notipipe_alerts_saved_total"] == {(): 0}
    assert scraped["notipipe_queue_depth"] == {(): 0}
    assert scraped["notipipe_dashboard_browsers"] == {(): 0}
    assert scraped["notipipe_follower_lag"] == {(): 0}
    assert {name for name in scraped if name.startswith("notipipe_alerts_refused")} == {
        "notipipe_alerts_refused_total"
    }


def test_serve_without_prometheus_client_answers_501_naming_the_extra(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    # Python's own way to make a module unimportable: None in sys.modules.
    (blocked / "sitecustomize.py").write_text("import sys\nsys.modules['prometheus_client'] = None\n")
    path = tmp_path / "served.db"
    subprocess.run([sys.executable, "-m", "notipipe", "run", "--db", str(path), "--alerts", "3"], check=True,
                   capture_output=True, timeout=START_TIMEOUT)  # fmt: skip
    with children() as kids:
        env = {"PYTHONPATH": os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])}
        proc = kids.start("serve", "--db", str(path), "--port", "0", env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("notipipe serve: http://"), line
        status, text = _scrape(line.split()[2].rstrip("/") + "/metrics")
    assert status == 501
    assert text == (
        "notipipe serve: /metrics: Prometheus metrics need the metrics extra:"
        " pip install 'notipipe[metrics]' (prometheus_client is missing)\n"
    )


# -- OpenTelemetry ---------------------------------------------------------------------------------


def test_opentelemetry_instruments_read_the_snapshot_through_the_real_sdk(
    impl: Impl, open_db: Callable[..., Any]
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        db = open_db(":memory:")
        db.subscribe(Failing())
        db.error_handler = lambda *_: None
        instrument(db, provider)
        db.save_many(_sms(impl, 9))
        db.flush()
        points = _points(reader)
        assert points["notipipe.alerts.saved"] == {(): 9}
        assert points["notipipe.alerts.committed"] == {(): 9}
        assert points["notipipe.queue.depth"] == {(): 0}
        assert points["notipipe.alerts.refused"][(("reason", "invalid"),)] == 0
        assert points["notipipe.observer.failures"] == {(("observer", f"{__name__}.Failing#0"),): 9}
        assert points["notipipe.commit.duration.count"] == {(): db.metrics().batches}
        assert points["notipipe.commit.duration.bucket"][(("le", "+Inf"),)] == db.metrics().batches
        assert isinstance(points["notipipe.alerts.saved"][()], int)
        db.save_many(_sms(impl, 4))
        db.flush()
        again = _points(reader)  # read anew at each collection
        assert again["notipipe.alerts.saved"] == {(): 13}
        assert again["notipipe.observer.failures"] == {(("observer", f"{__name__}.Failing#0"),): 13}
    finally:
        provider.shutdown()


def test_an_opentelemetry_collection_reads_one_snapshot(impl: Impl, open_db: Callable[..., Any]) -> None:
    # One snapshot for every instrument of a collection: its figures agree with each other
    # (committed never above saved), and the database is asked for the durable lag once.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    class Counted:
        def __init__(self, db: Any) -> None:
            self.db = db
            self.snapshots = 0

        def metrics(self, *, durable: bool = True) -> Metrics:
            self.snapshots += 1
            return self.db.metrics(durable=durable)  # type: ignore[no-any-return]

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        source = Counted(open_db(":memory:"))
        instrument(source, provider)
        source.db.save_many(_sms(impl, 3))
        source.db.flush()
        assert _points(reader)["notipipe.alerts.committed"] == {(): 3}
        assert source.snapshots == 1
        _points(reader)
        assert source.snapshots == 2
    finally:
        provider.shutdown()


def _points(reader: Any) -> dict[str, dict[tuple[tuple[str, object], ...], object]]:
    found: dict[str, dict[tuple[tuple[str, object], ...], object]] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    points[tuple(sorted(point.attributes.items()))] = point.value
    return found
