"""Durable named subscribers on NATS JetStream against a real nats-server: every stored alert, at
least once, in stream order; resume where the name stopped; a crash between update and ack
redelivers that chunk whole; one holder at a time, a standby takes over; a server kill -9 loses
nothing; ``notipipe subscriptions`` shows each name's lag in alerts."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from notipipe import StoredAlert
from notipipe._storage.nats.client import NatsClient, parse_target
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.subscribers import GROUP, consumer_name, durable_name, list_subscriptions
from tests._holders import delivered_ids, holder_process, stop_holder
from tests._nats_server import NatsServer
from tests._pg_rows import Seen
from tests._processes import run_child, spawn, wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="waits on child processes and the DatabaseConnection singleton"),
]

#: The module whose ``subscriber`` program holds a durable name in another process.
CHILDREN = "tests._nats_durable_children"

#: Enough for a takeover: the pin's timeout, then the old holder's chunk's acknowledgement wait.
TAKEOVER = 60.0


def _write(impl: Impl, url: str, count: int, chunk: int) -> None:
    """``count`` alerts saved by another process, ``chunk`` per chunk (bodies ``"0"``, ``"1"``, ...)."""
    done = run_child(impl, "tests._nats_children", "write", url, str(count), str(chunk), timeout=120)
    assert done.returncode == 0, done.stderr


def _stored(db: Any) -> list[int]:
    return [m.id for m in db.after(0, 10**6)]


def _wait_delivered(out: Path, ids: list[int], timeout: float = TAKEOVER) -> list[int]:
    got: list[int] = []

    def has_all() -> bool:  # another process writes the file: polled, with a deadline
        got[:] = delivered_ids(out)
        return set(ids) <= set(got)

    wait_until(has_all, timeout, interval=0.05)
    return got


def _subscriber_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]


def test_names_map_to_consumer_names_and_back() -> None:
    for name in ("eu-dashboard", "audit_2", "my name.x", "a*b>c/d\\e", "élan ✓", "=3D"):
        mapped = consumer_name(name)
        assert all(c.isascii() and (c.isalnum() or c in "-_=") for c in mapped), mapped
        assert durable_name(mapped) == name
    assert consumer_name("eu-dashboard") == "eu-dashboard"
    with pytest.raises(ValueError, match="as a NATS consumer name"):
        consumer_name("." * 100)


def test_every_alert_saved_by_another_process_is_delivered_once_in_order(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="round trip")
    try:
        _write(impl, nats_url, 2000, 150)
        stored = _stored(db)
        assert len(stored) == 2000
        assert seen.wait_for(stored, TAKEOVER)
    finally:
        assert db.unsubscribe(seen)
    assert seen.ids() == stored, "an alert missing, repeated or out of stream order"
    assert [m.body for m in seen.messages] == [str(i) for i in range(2000)]
    assert {type(m).__name__ for m in seen.messages} == {impl.SMSMessage.__name__}


def test_a_name_resumes_exactly_where_it_stopped(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)
    db.save_many([impl.SMSMessage(body="before")])  # stored before the name exists: not delivered
    db.flush()
    seen = Seen()
    assert db.subscribe(seen, durable_name="resume")
    assert not db.subscribe(seen, durable_name="resume")  # the same observer again: no change
    db.save_many([impl.SMSMessage(body=f"first {i}") for i in range(30)])
    db.flush()
    first = _stored(db)[1:]
    assert seen.wait_for(first)
    assert db.unsubscribe(seen)
    assert _subscriber_threads() == []
    assert not db.unsubscribe(seen)
    for k in range(3):
        db.save_many([impl.SMSMessage(body=f"second {k} {i}") for i in range(20)])
        db.flush()
    second = _stored(db)[31:]
    assert len(second) == 60
    again = Seen()
    assert db.subscribe(again, durable_name="resume")
    assert again.wait_for(second)
    db.close()  # stops the durable subscriptions too
    assert _subscriber_threads() == []
    assert seen.ids() == first
    assert again.ids() == second, "the resumed name missed or repeated alerts"


def test_a_subscriber_killed_between_update_and_ack_gets_that_chunk_again_whole(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "delivered"
    with holder_process(impl, CHILDREN, nats_url, "crash", out, "120") as first:
        _write(impl, nats_url, 300, 50)  # six chunks of 50
        first.wait(timeout=60)
        assert first.returncode == -9
    ids = _stored(db)
    assert len({i >> 16 for i in ids}) == 6
    assert delivered_ids(out) == ids[:120]
    out.unlink()
    with holder_process(impl, CHILDREN, nats_url, "crash", out) as second:
        after = _wait_delivered(out, ids[120:])
        stop_holder(second)
    # Chunk 3 (ids[100:150]) was in hand: all of it again. Chunks 1 and 2 were acknowledged,
    # but at least once: their acknowledgements, the dead holder's last, may not have left its
    # process before the kill (the loop's thread writes them; on a busy free-threaded run it has
    # not always, for either), so the new holder may start one or two chunks earlier, whole.
    assert after in (ids[100:], ids[50:], ids), (
        "the chunk in flight was not redelivered whole, or more came again"
    )


def test_a_new_holder_delivers_the_dead_holders_chunks_before_newer_ones(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    # The dead holder had several chunks in flight; chunks stored after its death reach the new
    # holder before the server hands it the old ones (once their acknowledgement is overdue).
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "delivered"
    with holder_process(impl, CHILDREN, nats_url, "in order", out, "70") as first:
        _write(impl, nats_url, 300, 50)  # six chunks of 50, all in the first holder's hands
        first.wait(timeout=60)
        assert first.returncode == -9
    _write(impl, nats_url, 300, 50)  # six more, after its death
    ids = _stored(db)
    assert len({i >> 16 for i in ids}) == 12
    assert delivered_ids(out) == ids[:70]
    out.unlink()
    with holder_process(impl, CHILDREN, nats_url, "in order", out) as second:
        after = _wait_delivered(out, ids[50:])
        stop_holder(second)
    # At least once: the dead holder's last acknowledgement (of its first chunk) may not have
    # reached the server before the kill, so the new holder may start one chunk earlier; never
    # with a newer chunk before an older one.
    assert after in (ids, ids[50:]), "the new holder delivered newer chunks before the dead holder's"


def test_a_pin_left_to_a_stopped_holders_pull_is_released_at_subscribe(impl: Impl, nats_url: str) -> None:
    # A holder's pull request outlives it at the server (until it expires); a chunk stored then
    # pins that request, and the server would wait PIN_TIMEOUT before pinning the next holder.
    db = impl.DatabaseConnection(nats_url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="left")  # the name's consumer
    assert db.unsubscribe(seen)
    client = NatsClient(parse_target(nats_url), "test: a holder gone, its pull still waiting")
    client.connect()
    stream, consumer = client.target.stream, consumer_name("left")
    try:
        pull = json.dumps({"batch": 1, "expires": 60 * 10**9, "group": GROUP}).encode()
        inbox = client.nc.new_inbox()
        client.call(lambda: client.nc.subscribe(inbox))
        client.call(
            lambda: client.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", pull, reply=inbox)
        )
        client.call(client.nc.flush)
    finally:
        client.close()
    db.save_many([impl.SMSMessage(body="while no one held it")])
    db.flush()
    stale = _pin(nats_url, consumer)
    assert stale is not None  # the gone holder's pull got the pin
    assert db.subscribe(seen, durable_name="left")
    try:
        assert _pin(nats_url, consumer) != stale, "the pin nobody holds was kept"
        assert seen.wait_for(_stored(db), TAKEOVER)
    finally:
        assert db.unsubscribe(seen)


def _pin(url: str, consumer: str) -> str | None:
    """The consumer's pinned client id, as the server tells it (None: nobody pinned)."""
    client = NatsClient(parse_target(url), "test: the consumer's pin")
    client.connect()
    subject = f"$JS.API.CONSUMER.INFO.{client.target.stream}.{consumer}"
    try:
        reply = client.call(lambda: client.nc.request(subject, b"", timeout=5))
    finally:
        client.close()
    groups = json.loads(reply.data).get("priority_groups") or []
    return next((str(g["pinned_client_id"]) for g in groups if g.get("pinned_client_id")), None)


def test_one_process_delivers_a_name_and_a_standby_takes_over_when_it_is_killed(
    impl: Impl, nats_url: str, tmp_path: Path
) -> None:
    db = impl.DatabaseConnection(nats_url)
    out = tmp_path / "delivered"
    standby = Seen()
    with holder_process(impl, CHILDREN, nats_url, "shared", out) as holder:
        db.save_many([impl.SMSMessage(body="first")])
        db.flush()
        first = _stored(db)
        assert _wait_delivered(out, first) == first
        assert db.subscribe(standby, durable_name="shared")
        for k in range(10):  # ten chunks: a second deliverer would get some of them
            db.save_many([impl.SMSMessage(body=f"second {k} {i}") for i in range(5)])
            db.flush()
        second = _stored(db)[1:]
        assert _wait_delivered(out, second) == first + second
        assert standby.ids() == [], "the standby delivered while the holder held the name"
        (state,) = list_subscriptions(nats_url)
        assert state.holder == f"{holder.pid}@{os.uname().nodename}"
        holder.kill()
        holder.wait(timeout=30)
        db.save_many([impl.SMSMessage(body="third")])
        db.flush()
        third = _stored(db)[51:]
        assert standby.wait_for(third, TAKEOVER), "the standby did not take over"
    assert standby.ids() == third, "the standby delivered while the holder held the name"
    assert db.unsubscribe(standby)


def test_a_server_killed_and_restarted_while_a_subscriber_reads_loses_nothing(
    impl: Impl, nats_own_server: NatsServer
) -> None:
    url = f"{nats_own_server.url}/KILLED"
    db = impl.DatabaseConnection(url)
    seen = Seen()
    assert db.subscribe(seen, durable_name="outage")
    try:
        writer = spawn(impl, "tests._nats_children", "write", url, "3000", "100")
        assert writer.stdout is not None
        for line in writer.stdout:  # kill -9 the server mid-stream, twice
            if line in ("flushed 1000\n", "flushed 2000\n"):
                nats_own_server.restart()
            if line == "done\n":
                break
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        stored = _stored(db)
        assert len(stored) == 3000
        assert seen.wait_for(stored, TAKEOVER), f"{len(set(stored) - set(seen.ids()))} alerts never delivered"
    finally:
        assert db.unsubscribe(seen)
    assert sorted(set(seen.ids())) == stored


def _subscriptions_command(impl: Impl, url: str) -> str:
    # Another process: the command closes the DatabaseConnection singleton it opens.
    done = run_child(impl, "notipipe", "subscriptions", "--db", url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_subscriptions_command_shows_each_names_lag_in_alerts(impl: Impl, nats_url: str) -> None:
    assert _subscriptions_command(impl, nats_url) == "no durable subscriptions\n"
    db = impl.DatabaseConnection(nats_url)
    held, idle = Seen(), Seen()
    assert db.subscribe(held, durable_name="eu-dashboard")
    assert db.subscribe(idle, durable_name="audit trail")
    assert db.unsubscribe(idle)
    for size in (7, 30, 100):  # three chunks: the lag counts alerts, not chunks
        db.save_many([impl.SMSMessage(body=f"{size} {i}") for i in range(size)])
        db.flush()
    stored = _stored(db)
    assert held.wait_for(stored)
    assert wait_until(lambda: {s.name: s.lag for s in db.subscriptions()}["eu-dashboard"] == 0, 30)
    # A name given up before any chunk came has no pin of its own to give up: the server's pin of
    # its last pull stays until its timeout.
    assert wait_until(lambda: not {s.name: s.active for s in db.subscriptions()}["audit trail"], 30)
    lines = _subscriptions_command(impl, nats_url).splitlines()
    assert lines[0].split() == ["NAME", "UNDELIVERED", "OLDEST", "HELD", "BY"]
    audit, eu = lines[1:]
    assert audit.startswith("audit trail ")
    assert audit.split()[2:3] == ["137"]
    assert audit.split()[-1] == "-"
    assert eu.split() == ["eu-dashboard", "0", "-", f"{os.getpid()}@{os.uname().nodename}"]
    states = {s.name: s for s in db.subscriptions()}
    assert states["eu-dashboard"].last_id == stored[-1]
    assert states["audit trail"].last_id == 0
    assert states["audit trail"].oldest_age is not None
    assert db.unsubscribe(held)


def test_unsubscribing_in_the_middle_of_a_chunk_gives_the_chunk_back_whole(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)

    class QuitsAtThird(Seen):
        def update(self, message: Any) -> None:
            super().update(message)
            if len(self.messages) == 3:
                assert db.unsubscribe(self)

    quitter = QuitsAtThird()
    assert db.subscribe(quitter, durable_name="half")
    db.save_many([impl.SMSMessage(body=f"a {i}") for i in range(10)])
    db.flush()
    ids = _stored(db)
    assert wait_until(lambda: _subscriber_threads() == [], 30)
    assert quitter.ids() == ids[:3], "delivery went on after unsubscribe"
    again = Seen()
    assert db.subscribe(again, durable_name="half")
    assert again.wait_for(ids, TAKEOVER)
    assert db.unsubscribe(again)
    assert again.ids() == ids, "the chunk in hand was not given back whole"


def test_a_chunk_or_row_another_tool_stored_is_reported_once_and_delivery_goes_on(
    impl: Impl, nats_url: str
) -> None:
    # A chunk is decoded straight into its alerts; one that holds a row no alert can be built
    # from is delivered row by row instead: that row reported, the others delivered.
    db = impl.DatabaseConnection(nats_url)
    errors: list[tuple[object, str]] = []
    db.error_handler = lambda observer, message, error: errors.append((message, str(error)))
    db.save_many([impl.SMSMessage(body="first")])
    db.flush()
    seen = Seen()
    assert db.subscribe(seen, durable_name="foreign")
    mixed = [
        ("sms", 1.0, 3, "+15550001000", "", "a"),
        ("email", 1.0, 3, "not an address", "", "bad"),
        ("fax", 1.0, 3, "+15550001000", "", "other kind"),
        ("email", 1.0, 3, "ops@eu.example.com", "s", "b"),
    ]
    client = NatsClient(parse_target(nats_url), "test: another tool")
    client.connect()
    try:
        for data in (CODEC.encode_chunk(mixed), b"not a chunk", CODEC.encode_chunk(mixed[:1])):
            client.call(lambda d=data: client.js.publish(client.target.subject, d))  # type: ignore[misc]
    finally:
        client.close()
    db.save_many([impl.SMSMessage(body="last")])
    db.flush()
    assert wait_until(lambda: any(getattr(m, "body", None) == "last" for m in seen.messages), TAKEOVER)
    assert db.unsubscribe(seen)
    # The row of a kind this process has not registered is no error: a StoredAlert (issue 22).
    fax = [m for m in seen.messages if isinstance(m, StoredAlert)]
    assert [(m.kind, dict(m.fields)) for m in fax] == [
        ("fax", {"address": "+15550001000", "subject": "", "body": "other kind"})
    ]
    assert [getattr(m, "body", m) for m in seen.messages] == ["a", fax[0], "b", "a", "last"]
    assert {type(m) for m in seen.messages} == {
        impl.SMSMessage,
        impl.EmailMessage,
        StoredAlert,
    }  # the database's
    ids = seen.ids()
    assert ids == sorted(ids)
    assert [i & 0xFFFF for i in ids[:4]] == [0, 2, 3, 0], ids  # each keeps its place in its chunk
    told = [text for _, text in errors]
    assert sum("is not an e-mail address" in t for t in told) == 1, told
    assert not any("'fax'" in t for t in told), told
    assert sum("not a notipipe chunk" in t for t in told) == 1, told


def test_a_consumer_deleted_under_a_subscription_is_reported_and_made_again(
    impl: Impl, nats_url: str
) -> None:
    db = impl.DatabaseConnection(nats_url)
    errors: list[str] = []
    db.error_handler = lambda observer, message, error: errors.append(str(error))
    seen = Seen()
    assert db.subscribe(seen, durable_name="deleted")
    db.save_many([impl.SMSMessage(body="before")])
    db.flush()
    assert wait_until(lambda: [m.body for m in seen.messages] == ["before"], TAKEOVER)
    client = NatsClient(parse_target(nats_url), "test: an operator")
    client.connect()
    try:  # ``nats consumer rm``
        _delete_consumer(client, consumer_name("deleted"))
    finally:
        client.close()
    assert wait_until(lambda: any("was gone" in e for e in errors), TAKEOVER), errors
    db.save_many([impl.SMSMessage(body=f"after-{i}") for i in range(3)])
    db.flush()
    assert wait_until(lambda: "after-2" in [m.body for m in seen.messages], TAKEOVER), seen.messages
    assert db.unsubscribe(seen)
    # At least once: "before", its acknowledgement racing the delete, may come again.
    assert list(dict.fromkeys(m.body for m in seen.messages)) == ["before", "after-0", "after-1", "after-2"]
    stream = parse_target(nats_url).stream
    assert errors[0] == (
        f"{nats_url}: the consumer deleted of stream {stream} was gone (status 409 Consumer Deleted):"
        " made again; the durable subscriber 'deleted' delivers the alerts stored from now on"
    )


def _delete_consumer(client: NatsClient, consumer: str) -> None:
    """Delete ``consumer``; the server may fail a delete racing the consumer's own state write
    (10051 "directory not empty") after removing it: done once it is gone or made again."""
    js_errors, stream = client.nats.js.errors, client.target.stream
    for _ in range(20):
        created = client.call(lambda: client.js.consumer_info(stream, consumer)).created
        try:
            client.call(lambda: client.js.delete_consumer(stream, consumer))
            return
        except js_errors.ServerError:
            try:  # gone, or already made again by the subscriber (a newer one): deleted
                if client.call(lambda: client.js.consumer_info(stream, consumer)).created != created:
                    return
            except js_errors.NotFoundError:
                return
    pytest.fail(f"the consumer {consumer} could not be deleted")
