"""NATS faults, each against a real ``nats-server``: the server killed (``kill -9``) and restarted
while a child process writes; an acknowledgement lost after the server stored a chunk; a stream
limit reached."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from notipipe._errors import StorageError
from notipipe._storage.group_commit import Row
from notipipe._storage.interface import StoreOptions
from notipipe._storage.nats.client import NatsClient
from notipipe._storage.nats.store import NatsStore, _Chunk
from tests._nats_server import NatsServer
from tests._processes import kill, spawn
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
