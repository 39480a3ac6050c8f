"""A stream an operator deleted, made again by the next write: its sequences, and so the ids,
start again from 1. A follower positioned past the new stream's end, and a durable subscriber,
each warn once and read the new stream from its start, rather than waiting silently forever
(the follower) or missing the new stream's first chunks (the subscriber). Against a real
``nats-server``."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from notipipe._storage.nats.client import NatsClient, parse_target
from tests._pg_rows import Seen
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="opens and closes the DatabaseConnection singleton"),
]

#: Long enough for a mend after the stream came back, on a busy machine.
WAIT = 60.0


def _delete_stream(url: str) -> None:
    """What an operator does: ``nats stream rm``."""
    client = NatsClient(parse_target(url), "test: an operator")
    client.connect()
    try:
        client.call(lambda: client.js.delete_stream(client.target.stream))
    finally:
        client.close()


def _save(db: Any, impl: Impl, bodies: list[str]) -> None:
    for body in bodies:  # one chunk each
        db.save_many([impl.SMSMessage(body=body)])
        db.flush()


def _recreated_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "made again" in r.getMessage()]


def test_a_follower_past_the_new_streams_end_warns_once_and_reads_it_from_its_start(
    impl: Impl, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(nats_url)
    _save(db, impl, ["old 0", "old 1", "old 2"])
    stop = threading.Event()
    got: list[Any] = []

    def follow() -> None:
        for page in db.follow(0, poll=0.05, stop=stop):
            got.extend(page)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        assert wait_until(lambda: len(got) == 3, WAIT)  # positioned after sequence 3
        _delete_stream(nats_url)
        _save(db, impl, ["new 0", "new 1"])  # the stream made again: sequences 1 and 2
        assert wait_until(lambda: len(got) >= 5, WAIT), [m.body for m in got]
    finally:
        stop.set()
        follower.join(30)
    assert [m.body for m in got] == ["old 0", "old 1", "old 2", "new 0", "new 1"]
    assert [m.id >> 16 for m in got] == [1, 2, 3, 1, 2]
    (warning,) = _recreated_warnings(caplog)
    assert "ids start again" in warning, warning


def test_a_durable_subscriber_delivers_a_made_again_stream_from_its_start(
    impl: Impl, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notipipe")
    db = impl.DatabaseConnection(nats_url)
    errors: list[str] = []
    db.error_handler = lambda observer, message, error: errors.append(str(error))
    seen = Seen()
    assert db.subscribe(seen, durable_name="through")
    try:
        _save(db, impl, ["old 0", "old 1", "old 2"])
        assert wait_until(lambda: len(seen.messages) == 3, WAIT)
        _delete_stream(nats_url)
        _save(db, impl, ["new 0", "new 1"])
        assert wait_until(lambda: "new 1" in [m.body for m in seen.messages], WAIT), seen.messages
    finally:
        assert db.unsubscribe(seen)
    # At least once: "old 2", its acknowledgement racing the delete, may come again.
    bodies = list(dict.fromkeys(m.body for m in seen.messages))
    assert bodies == ["old 0", "old 1", "old 2", "new 0", "new 1"], (
        "the new stream's first chunks were missed",
        errors,
    )
    assert sum("made again" in e and "ids start again" in e for e in errors) == 1, errors
