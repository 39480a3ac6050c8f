"""NATS faults, each against a real ``nats-server``: the server killed (``kill -9``) and restarted
while a child process writes; an acknowledgement lost after the server stored a chunk; a stream
limit reached."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from notipipe._errors import StorageError
from notipipe._storage.group_commit import Row
from notipipe._storage.interface import StoreOptions
from notipipe._storage.nats.client import NatsClient
from notipipe._storage.nats.store import NatsStore, _Chunk
from notipipe._storage.nats.subscribers import NatsDurableSubscription
from tests._nats_server import NatsServer
from tests._processes import kill, spawn, wait_until
from tests.conftest import Impl

pytestmark = [pytest.mark.system]


def _as_rows(batch: list[Any]) -> list[Row]:
    """The tests put rows themselves: the batch is its rows."""
    return list(batch)


def _bodies(url: str) -> list[str]:
    """Every stored alert's body, in id order, read by a store of the test's own."""
    store = NatsStore(url, _as_rows)
    try:
        bodies: list[str] = []
        last = 0
        while page := store.after(last, 10_000):
            bodies += [str(row[6]) for row in page]
            last = int(page[-1][0])  # type: ignore[call-overload]
        return bodies
    finally:
        store.close()


def test_a_server_killed_and_restarted_mid_stream_stores_every_flushed_alert_once(
    impl: Impl, nats_own_server: NatsServer
) -> None:
    url = f"{nats_own_server.url}/KILLED"
    count, chunk = 20_000, 500
    child = spawn(impl, "tests._nats_children", "write", url, str(count), str(chunk))
    lines: queue.Queue[str] = queue.Queue()
    assert child.stdout is not None

    def read_lines() -> None:
        for line in child.stdout or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        kills = 0
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                pytest.fail(f"the writer stalled after {kills} server restarts (no line from it for 60 s)")
            if line.startswith("flushed") and int(line.split()[1]) in (2_000, 7_000, 13_000, 18_000):
                nats_own_server.restart()  # kill -9, then start on the same store and port
                kills += 1
            if line.startswith("done"):
                break
        assert child.wait(60) == 0
        assert kills == 4
    finally:
        kill(child)
    bodies = _bodies(url)
    assert len(bodies) == count
    assert bodies == [str(i) for i in range(count)]


class _AckLost(NatsStore):
    """The real store, except that its first ``LOST`` sends go out without a reply subject: the
    server stores each and its acknowledgement never comes back (a lost ack, made deterministic);
    the send then fails as a lost ack does, with a timeout."""

    LOST = 3

    def __init__(self, url: str) -> None:
        super().__init__(url, _as_rows, StoreOptions(batch_size=100, max_delay=0))
        self.lost = 0

    async def _publish(self, client: NatsClient, chunk: _Chunk) -> Any:
        if self.lost < self.LOST:
            headers = {"Nats-Msg-Id": chunk.msg_id}
            await client.nc.publish(client.target.subject, chunk.data, headers=headers)
            await client.nc.flush()
            self.lost += 1
            raise TimeoutError("the acknowledgement was lost")
        return await super()._publish(client, chunk)


def test_a_chunk_sent_again_after_a_lost_ack_is_stored_once(nats_url: str) -> None:
    store = _AckLost(nats_url)
    ids: list[int] = []
    store._on_commit = lambda batch, got: ids.extend(got)
    try:
        store.put_many([("sms", 1.0, 1, "+1", "", str(i)) for i in range(250)])
        store.flush(30)
        assert store.lost == 3  # three batches, one chunk each: every first ack lost
    finally:
        store.close()
    assert _bodies(nats_url) == [str(i) for i in range(250)]
    assert ids == [row_id for row_id in ids if row_id >> 16 in (1, 2, 3)]  # the first sends' seqs


def test_while_the_server_is_down_producers_block_once_eight_batches_are_pending(
    nats_own_server: NatsServer,
) -> None:
    # Four batches may wait beyond the _window the writer may have sent ahead of their
    # acknowledgements: a producer blocks there, not earlier, and goes on once the server is back.
    url = f"{nats_own_server.url}/HELD"
    store = NatsStore(url, _as_rows, StoreOptions(batch_size=10, max_delay=0))
    bound = (4 + NatsStore._window) * 10
    parts = bound // 10 + 2
    queued: list[int] = []

    def produce() -> None:
        for part in range(parts):
            store.put_many([("sms", 1.0, 1, "+1", "", f"{part}-{i}") for i in range(10)])
            queued.append(part)

    producer = threading.Thread(target=produce, daemon=True)  # never keeps a failed run alive
    killed = False
    try:
        store.put_many([("sms", 1.0, 1, "+1", "", "before")])
        store.flush(10)
        nats_own_server.kill()
        killed = True
        producer.start()
        assert wait_until(lambda: store.pending == bound, 10), f"{store.pending} pending, not {bound}"
        producer.join(0.5)
        assert producer.is_alive()
        assert (len(queued), store.pending) == (bound // 10, bound)
    finally:
        try:
            if killed:
                nats_own_server.start()  # back: the producer goes on, close() stores the rest
            if producer.ident is not None:
                producer.join(60)
            store.flush(60)
        finally:
            store.close()
    assert not producer.is_alive()
    # Each stored once; a chunk sent again after the outage may follow chunks sent behind it.
    bodies = _bodies(url)
    assert bodies[0] == "before"
    assert sorted(bodies[1:]) == sorted(f"{part}-{i}" for part in range(parts) for i in range(10))


def test_a_stream_limit_reached_is_a_clear_error_and_nothing_is_discarded(nats_url: str) -> None:
    url = f"{nats_url}?max_msgs=2&discard=new"
    store = NatsStore(url, _as_rows, StoreOptions(batch_size=10, max_delay=0))
    try:
        for part in range(2):
            store.put_many([("sms", 1.0, 1, "+1", "", f"{part}-{i}") for i in range(10)])
            store.flush(10)
        _raise_limit(store._client, 2, max_bytes=1 << 30)  # an operator's edit: the error shows it
        store.put_many([("sms", 1.0, 1, "+1", "", f"2-{i}") for i in range(10)])
        with pytest.raises(StorageError) as raised:
            store.flush(10)
        message = str(raised.value)
        assert "refused a chunk: maximum messages exceeded" in message
        assert "max_bytes=1073741824, max_msgs=2" in message
        assert "discard=new" in message
        assert "10 alerts wait in memory and are retried" in message
        assert store.pending == 10
        _raise_limit(store._client, 3)  # the operator raises the limit: the alerts go in
        store.flush(30)
    finally:
        store.close()
    assert _bodies(nats_url) == [f"{part}-{i}" for part in range(3) for i in range(10)]


def _raise_limit(client: NatsClient, max_msgs: int, max_bytes: int = -1) -> None:
    """``nats stream edit --max-msgs``: the stream's configuration with a higher ``max_msgs``."""

    async def update() -> None:
        info = await client.js.stream_info(client.target.stream)
        info.config.max_msgs = max_msgs
        info.config.max_bytes = max_bytes
        await client.js.update_stream(info.config)

    client.call(update)


def _debian_server() -> Path:
    """Debian's own nats-server (2.9.10): ``apt-get install nats-server``. Missing is a failure."""
    found = shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail("Debian's nats-server (2.9.10) is missing: apt-get install -y nats-server")
    return Path(found)


def test_a_reconnection_to_a_server_too_old_writes_nothing_there_and_says_why(
    nats_own_server: NatsServer,
) -> None:
    good = nats_own_server
    url = f"{good.url}/OLDER"
    store = NatsStore(url, _as_rows, StoreOptions(batch_size=10, max_delay=0))
    old = NatsServer(_debian_server(), sync_always=False)
    delivered: list[object] = []
    told: list[str] = []
    observer = _Collect(delivered)
    subscriber = NatsDurableSubscription(
        url,
        "old",
        observer,
        lambda row: row,
        lambda: lambda o, m, e: told.append(str(e)),
        page=100,
        poll=0.05,
    )
    try:
        store.put_many([("sms", 1.0, 1, "+1", "", "first")])
        store.flush(10)
        subscriber.start()
        store.put_many([("sms", 1.0, 1, "+1", "", "before")])
        store.flush(10)
        assert wait_until(lambda: len(delivered) == 1, 60)
        good.kill()
        old.take_over(good)
        old.start()
        version = old.version()
        assert version.startswith("2.9.")
        store.put_many([("sms", 1.0, 1, "+1", "", f"during-{i}") for i in range(3)])
        with pytest.raises(StorageError) as raised:
            store.flush(30)
        assert f"nats-server {version} at 127.0.0.1:{good.port} is too old" in str(raised.value)
        assert store.pending == 3
        with pytest.raises(StorageError, match="is too old"):
            store.last(1)
        assert wait_until(lambda: any("is too old" in t for t in told), 60), told
        old.kill()
        good.start()  # the newer server back, on its own store
        assert wait_until(lambda: store.pending == 0, 60), "the queued alerts never went to the newer server"
        store.flush(30)
        assert wait_until(lambda: len(delivered) == 4, 60), delivered
    finally:
        subscriber.stop()
        store.close()
        old.stop()
    assert _bodies(url) == ["first", "before", "during-0", "during-1", "during-2"]
    assert [row[6] for row in delivered] == ["before", "during-0", "during-1", "during-2"]  # type: ignore[index]
    assert told == [
        f"{url}: nats-server {version} at 127.0.0.1:{good.port} is too old: notipipe needs 2.11 or newer;"
        " the durable subscriber 'old' waits for a newer server"
    ]


class _Collect:
    def __init__(self, into: list[object]) -> None:
        self.into = into

    def update(self, message: object) -> None:
        self.into.append(message)


def test_a_wrong_password_is_refused_at_once_and_close_returns() -> None:
    with NatsServer(extra='authorization { user: a, password: "right-pw" }\n') as server:
        host = server.url.removeprefix("nats://")
        store = NatsStore(f"nats://a:wrong-pw@{host}/AUTH", _as_rows)
        closed = threading.Event()

        def close() -> None:
            store.close()
            closed.set()

        try:
            with pytest.raises(StorageError) as raised:  # the first save connects, and is refused
                store.put_many([("sms", 1.0, 1, "+1", "", "x")])
            assert f"authorization refused by {host}" in str(raised.value)
            assert "wrong-pw" not in str(raised.value)
        finally:
            threading.Thread(target=close, daemon=True).start()
            assert closed.wait(30), "close() did not return"
        good = NatsStore(f"nats://a:right-pw@{host}/AUTH", _as_rows)
        try:
            good.put_many([("sms", 1.0, 1, "+1", "", "y")])
            good.flush(30)
        finally:
            good.close()


def test_a_stream_deleted_under_the_writer_is_made_again_and_the_queued_alerts_stored(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = NatsStore(nats_url, _as_rows, StoreOptions(batch_size=10, max_delay=0))
    try:
        store.put_many([("sms", 1.0, 1, "+1", "", f"before-{i}") for i in range(3)])
        store.flush(10)
        client = store._client
        stream = client.target.stream
        client.call(lambda: client.js.delete_stream(stream))  # ``nats stream rm``
        with caplog.at_level(logging.ERROR, logger="notipipe"):
            store.put_many([("sms", 1.0, 1, "+1", "", f"after-{i}") for i in range(25)])
            store.flush(30)
    finally:
        store.close()
    # Each once; a batch sent ahead into the missing stream is sent again, after the batches
    # behind it (as after a reconnection: the store's docstring).
    assert sorted(_bodies(nats_url)) == sorted(f"after-{i}" for i in range(25))
    told = [r.getMessage() for r in caplog.records if "was missing" in r.getMessage()]
    assert told == [
        f"notipipe: {nats_url}: stream {stream} was missing: created again; ids start again from 1"
    ]
