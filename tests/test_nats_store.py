"""DatabaseConnection on NATS JetStream: the SQLite API and semantics, follow, the target's
options, a server too old. Every test runs against a real ``nats-server`` (``tests/_nats_server``)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notipipe._errors import ConfigurationError, StorageError
from notipipe._storage import backend_for
from notipipe._storage.group_commit import Row
from notipipe._storage.interface import StoreOptions
from notipipe._storage.nats.client import NatsClient, parse_target
from notipipe._storage.nats.follow import follow_rows, start_after_time
from notipipe._storage.nats.store import NatsStore
from tests._nats_server import NatsServer
from tests._processes import wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]


@pytest.fixture
def open_nats(impl: Impl, nats_url: str) -> Iterator[Callable[..., Any]]:
    """A factory: this twin's DatabaseConnection on the test's own stream."""

    def make(**options: Any) -> Any:
        return impl.DatabaseConnection(nats_url, **options)

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


def _without_ids(messages: list[Any]) -> list[Any]:
    return [m.__replace__(id=0) for m in messages]


def test_same_answers_as_sqlite(impl: Impl, open_nats: Callable[..., Any], tmp_path: Path) -> None:
    sqlite_db = impl.DatabaseConnection(tmp_path / "a.db")
    first, *rest = _sample(impl)
    sqlite_db.save(first)
    sqlite_db.save_many(rest)
    sqlite_db.flush()
    on_sqlite = (
        sqlite_db.last(3),
        sqlite_db.after(0),
        sqlite_db.count_by_kind(),
        sqlite_db.count_by_priority(),
    )
    drop(impl.DatabaseConnection)
    db = open_nats(max_delay=0)
    db.save(first)
    db.flush()
    db.save_many(rest)
    db.flush()
    everything = db.after(0)
    ids = [m.id for m in everything]
    assert ids == sorted(ids)
    assert [i >> 16 for i in ids] == [1, 2, 2, 2]  # the stream sequence of each chunk
    assert [i & 0xFFFF for i in ids] == [0, 0, 1, 2]  # the place in the chunk
    assert _without_ids(db.last(3)) == _without_ids(on_sqlite[0])
    assert _without_ids(everything) == _without_ids(on_sqlite[1])
    assert db.after(ids[1], 2) == everything[2:4]
    assert db.after(ids[0]) == everything[1:]
    assert db.last(0) == []
    assert (db.count_by_kind(), db.count_by_priority()) == on_sqlite[2:]
    assert db.count_by_kind_and_priority(ids[1]) == {("email", 4): 1, ("sms", 5): 1}
    stats = db.stats()
    assert (stats.total, stats.first_at, stats.last_at) == (4, 999.0, 1002.25)
    assert stats.size_bytes > 0
    assert stats.origins == ((os.uname().nodename, 1, 4),)
    assert (db.durable_count, db.pending_count) == (4, 0)


def test_an_empty_stream_reads_as_empty(open_nats: Callable[..., Any]) -> None:
    db = open_nats()
    assert (db.last(5), db.after(0), db.count_by_kind(), db.count_by_priority()) == ([], [], {}, {})
    st = db.stats()
    assert (st.total, st.first_at, st.last_at, st.size_bytes) == (0, None, None, 0)


def test_after_commit_observers_get_each_stored_id(impl: Impl, open_nats: Callable[..., Any]) -> None:
    seen: list[Any] = []

    class Keep:
        def update(self, message: Any) -> None:
            seen.append(message)

    db = open_nats(deliver="after_commit", batch_size=3)
    db.subscribe(Keep())
    db.save_many([impl.SMSMessage(body=str(i)) for i in range(7)])
    db.flush()
    assert [m.id for m in seen] == [m.id for m in db.after(0)]
    assert [m.body for m in seen] == [str(i) for i in range(7)]


def test_the_url_selects_nats_and_never_shows_a_password(impl: Impl) -> None:
    backend = backend_for("nats://u:secret@127.0.0.1:4222/S")
    assert backend.name == "nats"
    assert backend.ids_follow_commits
    assert "secret" not in backend.shown("nats://u:secret@127.0.0.1:4222/S")
    for bad, says in [
        ("nats://u:secret@127.0.0.1:4222", "the stream's name is missing"),
        ("nats://u:secret@127.0.0.1:4222/a.b", "must be letters, digits"),
        ("nats://u:secret@127.0.0.1:4222/S?max_age=soon", "max_age must be a duration"),
        ("nats://u:secret@127.0.0.1:4222/S?colour=red", "unknown option 'colour'"),
    ]:
        with pytest.raises(ValueError, match=says) as raised:
            impl.DatabaseConnection(bad)
        assert "secret" not in str(raised.value)
        assert str(raised.value).startswith("nats://u:***@127.0.0.1:4222")
        drop(impl.DatabaseConnection)


def test_a_stream_is_made_with_the_urls_limits_and_an_existing_one_is_not_changed(nats_url: str) -> None:
    url = f"{nats_url}?max_age=7d&max_bytes=1GB&replicas=1&retention=limits&discard=new&duplicate_window=5m"
    client = NatsClient(parse_target(url))
    try:
        client.connect()
        config = client.config
        assert (config.max_age, config.max_bytes, config.num_replicas) == (7 * 86400, 2**30, 1)
        assert (
            getattr(config.discard, "value", config.discard),
            config.duplicate_window,
            config.subjects,
        ) == (
            "new",
            300,
            [f"notipipe.{parse_target(url).stream}"],
        )
    finally:
        client.close()
    other = NatsClient(parse_target(f"{nats_url}?max_age=1d"))
    try:
        with pytest.raises(
            ConfigurationError, match=r"max_age: the stream has 604800.0, the URL asks 86400.0"
        ):
            other.connect()
    finally:
        other.close()
    same = NatsClient(parse_target(nats_url))  # no options: the stream as it is
    try:
        same.connect()
    finally:
        same.close()


def _as_rows(batch: list[Any]) -> list[Row]:
    """The tests put rows themselves: the batch is its rows."""
    return list(batch)


def _store(url: str, **options: Any) -> NatsStore:
    return NatsStore(url, _as_rows, StoreOptions(**options))


def _rows_refusing_strings(batch: list[Any]) -> list[Row]:
    """Rows as given; a str stands for a message whose row cannot be built."""
    for item in batch:
        if isinstance(item, str):
            raise ValueError(f"no row for {item}")
    return list(batch)


def test_a_message_without_a_row_is_refused_alone_with_its_reason(nats_url: str) -> None:
    committed: list[tuple[list[Any], list[int]]] = []
    store = NatsStore(
        nats_url,
        _rows_refusing_strings,
        StoreOptions(batch_size=100, max_delay=0),
        on_commit=lambda batch, ids: committed.append((list(batch), list(ids))),
    )
    try:
        rows = [("email", 1.0, 1, "a@example.com", "s", f"body {i}") for i in range(4)]
        store.put_many([rows[0], rows[1], "bad", rows[2], rows[3]])
        with pytest.raises(StorageError, match="no row for bad"):
            store.flush()
        assert [row[6] for row in store.after(0, 10)] == [f"body {i}" for i in range(4)]
        ids = [i for _, batch_ids in committed for i in batch_ids]
        assert ids[2] == 0
        stored = ids[:2] + ids[3:]
        assert stored == sorted(stored)
        assert 0 not in stored
    finally:
        store.close()


def test_batches_sent_ahead_commit_in_order_each_once_with_their_stored_ids(nats_url: str) -> None:
    committed: list[tuple[list[Any], list[int]]] = []
    store = NatsStore(
        nats_url,
        _as_rows,
        StoreOptions(batch_size=100, max_delay=0),
        on_commit=lambda batch, ids: committed.append((list(batch), list(ids))),
    )
    rows = [("sms", 1.0, 1, "+1", "", str(i)) for i in range(5000)]
    try:
        store.put_many(rows)  # 50 batches queued at once: each next one is sent ahead
        store.flush(60)
        assert [row for batch, _ in committed for row in batch] == rows
        ids = [i for _, batch_ids in committed for i in batch_ids]
        assert ids == sorted(set(ids))
        assert 0 not in ids
        stored = store.after(0, 10_000)
        assert [row[0] for row in stored] == ids
        assert [row[6] for row in stored] == [row[5] for row in rows]
    finally:
        store.close()


def test_follow_sees_later_saves_in_order_with_no_gap(nats_url: str) -> None:
    store = _store(nats_url, batch_size=50, max_delay=0)
    store.put_many([("sms", 1.0, 1, "+1", "", "before")])
    store.flush()
    first_id = int(store.after(0, 1)[0][0])  # type: ignore[call-overload]
    stop = threading.Event()
    got: list[tuple[object, ...]] = []
    total = 1000

    def follow() -> None:
        for page in follow_rows(nats_url, first_id, 64, 0.01, stop):
            got.extend(page)
            if len(got) >= total:
                stop.set()

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        for start in range(0, total, 37):
            store.put_many([("sms", 1.0, 1, "+1", "", str(i)) for i in range(start, min(total, start + 37))])
        store.flush()
        follower.join(60)
    finally:
        stop.set()
        follower.join(10)
        store.close()
    assert [row[6] for row in got] == [str(i) for i in range(total)]
    ids = [row[0] for row in got]
    assert ids == sorted(ids)  # type: ignore[type-var]
    assert len(set(ids)) == total


def test_follow_from_a_time_starts_at_the_first_chunk_stored_since(nats_url: str) -> None:
    import time

    store = _store(nats_url, max_delay=0)
    try:
        store.put_many([("sms", 1.0, 1, "+1", "", "old")])
        store.flush()
        wait_until(lambda: False, 0.05)  # the server's clock moves past the first chunk
        since = time.time()
        store.put_many([("sms", 1.0, 1, "+1", "", "new")])
        store.flush()
        stop = threading.Event()
        pages = follow_rows(nats_url, start_after_time(nats_url, since), 10, 0.01, stop)
        assert [row[6] for row in next(pages)] == ["new"]
        stop.set()
        pages.close()
        assert start_after_time(nats_url, time.time() + 3600) >> 16 == 2  # nothing since: after the last
    finally:
        store.close()


def _debian_server() -> Path:
    """Debian's own nats-server (2.9.10): ``apt-get install nats-server``. Missing is a failure."""
    found = shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail("Debian's nats-server (2.9.10) is missing: apt-get install -y nats-server")
    return Path(found)


def test_a_server_older_than_2_11_is_refused_with_its_version(impl: Impl) -> None:
    with NatsServer(_debian_server(), sync_always=False) as old:
        version = old.version()
        assert version.startswith("2.9.")
        drop(impl.DatabaseConnection)
        db = impl.DatabaseConnection(f"nats://u:secret@127.0.0.1:{old.port}/S")
        try:
            with pytest.raises(StorageError) as raised:
                db.save(impl.SMSMessage(body="x"))
            assert (
                f"nats-server {version} at 127.0.0.1:{old.port} is too old: notipipe needs 2.11 or newer"
                in str(raised.value)
            )
            assert "secret" not in str(raised.value)
        finally:
            drop(impl.DatabaseConnection)


def test_the_gil_stays_off_with_the_nats_backend(impl: Impl, open_nats: Callable[..., Any]) -> None:
    db = open_nats()
    db.save_many([impl.SMSMessage(body=str(i)) for i in range(100)])
    db.flush()
    assert len(db.after(0)) == 100
    if not hasattr(sys, "_is_gil_enabled") or "free-threading" not in sys.version:
        pytest.skip("a GIL build: nothing to keep off (the check runs on the free-threaded leg)")
    assert sys._is_gil_enabled() is False
