"""A message on a notipipe stream's subject that is not a chunk this notipipe reads (another tool's
bytes, a chunk of a newer notipipe): logged once per sequence and skipped by every reader, never
the end of one. Against a real ``nats-server``."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from typing import Any

import pytest

from notipipe._storage.nats.client import NatsClient, parse_target
from notipipe._storage.nats.reader import stream_missing
from tests._processes import wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="opens and closes the DatabaseConnection singleton"),
]

#: Another tool's bytes, and a chunk of a codec version this notipipe does not read.
FOREIGN = (b"hello world", b"NP\x02\x01xxxx")


class _Ignore:
    def update(self, message: Any) -> None:
        pass


def _publish_raw(url: str, payloads: tuple[bytes, ...]) -> list[int]:
    """What another tool does: plain JetStream publishes to the stream's subject; their sequences."""
    client = NatsClient(parse_target(url), "another tool")
    client.connect()
    try:
        return [
            int(client.call(lambda: client.js.publish(client.target.subject, data)).seq)  # noqa: B023 - awaited here
            for data in payloads
        ]
    finally:
        client.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"}
    return subprocess.run(
        [sys.executable, "-m", "notipipe", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _follow(db: Any, want: int) -> list[str]:
    stop = threading.Event()
    bodies: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for page in db.follow(0, stop=stop, poll=0.05):
                bodies.extend(m.body for m in page)
        except BaseException as error:  # noqa: BLE001 - shown by the assertion below
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(bodies) >= want or bool(failure), timeout=30)
    finally:
        stop.set()
        thread.join(30)
    assert not failure, failure
    return bodies


def test_a_message_that_is_no_chunk_is_logged_once_and_skipped_by_every_reader(
    impl: Impl, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    drop(impl.DatabaseConnection)
    db = impl.DatabaseConnection(nats_url)
    try:
        idle = _Ignore()
        assert db.subscribe(idle, durable_name="audit")
        assert db.unsubscribe(idle)  # the name stays: its lag reads across the foreign messages
        db.save_many([impl.SMSMessage("+15551234567", f"a{i}") for i in range(2)])
        db.flush()
        foreign = _publish_raw(nats_url, FOREIGN)
        db.save_many([impl.SMSMessage("+15551234567", f"b{i}") for i in range(2)])
        db.flush()
        expected = ["a0", "a1", "b0", "b1"]
        with caplog.at_level(logging.WARNING, logger="notipipe"):
            assert _follow(db, 4) == expected
            assert [m.body for m in db.last(10)] == expected
            assert [m.body for m in db.after(0, 100)] == expected
            assert db.count_by_kind() == {"sms": 4}
            assert db.stats().by_kind == {"sms": 4}
        for seq in foreign:
            warnings = [
                r
                for r in caplog.records
                if re.search(rf"at sequence {seq} is not a notipipe chunk", r.message)
            ]
            assert len(warnings) == 1, [r.message for r in caplog.records]
        assert "version 2" in caplog.text  # the decode error is named
    finally:
        db.close()
        drop(impl.DatabaseConnection)
    stats = _cli("stats", "--db", nats_url)
    assert stats.returncode == 0, stats.stderr
    assert "alerts: 4" in stats.stdout, stats.stdout
    subscriptions = _cli("subscriptions", "--db", nats_url)
    assert subscriptions.returncode == 0, subscriptions.stderr
    assert "audit" in subscriptions.stdout, subscriptions.stdout


def _stream_missing(url: str) -> bool:
    client = NatsClient(parse_target(url), "the test")
    client.connect(make_stream=False)
    try:
        return stream_missing(client)
    finally:
        client.close()


def test_a_reading_command_on_a_stream_that_does_not_exist_makes_none(nats_url: str) -> None:
    # As for a file: a mistyped stream is named as no such database, and no empty stream is left
    # under the mistyped name (it made one before).
    assert _stream_missing(nats_url)
    for command in ("stats", "tail"):
        result = _cli(command, "--db", nats_url)
        assert result.returncode == 1, result
        said = result.stderr
        assert re.search(rf"notipipe {command}: error: nats://.*: no such database", said), said
        assert "Traceback" not in said
    assert _stream_missing(nats_url)
    _cli("run", "--alerts", "10", "--db", nats_url)  # made by a write
    assert not _stream_missing(nats_url)
    stats = _cli("stats", "--db", nats_url)
    assert stats.returncode == 0, stats.stderr
    assert "alerts: 10" in stats.stdout, stats.stdout
