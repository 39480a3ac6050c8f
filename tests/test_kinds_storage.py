"""Registered kinds in the store (issue 22), on every backend (a SQLite file, a real PostgreSQL, a
real nats-server) and every read path: ``last``, ``after``, ``follow``, durable subscribers and
``after_commit`` observers, each alert with its stored id. A row of a kind the reading process has
not registered (another process wrote it, or another tool) comes back as a ``StoredAlert``, and a
reader goes on past it; a kind whose fields changed reads its old rows."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from notipipe import BaseMessage, MessageFactory, StoredAlert, fields_of
from tests._pg_rows import Seen
from tests._processes import run_child, wait_until
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="opens and closes the DatabaseConnection singleton"),
]


class _Factory(MessageFactory):
    """The tests' own factory: the package's MessageFactory keeps its built-in kinds only."""


#: Seconds a reader gets to bring what was committed.
WAIT = 30.0

type Row = tuple[str, float, int, str, str, str]


@dataclass(frozen=True)
class Target:
    """A store of the test's own, and how another tool writes a raw row into it."""

    url: str
    insert: Callable[[Row], None]
    durable: bool  # whether the backend keeps durable names


def _sqlite(path: Path) -> Target:
    def insert(row: Row) -> None:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "INSERT INTO messages (kind, created_at, priority, address, subject, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

    return Target(str(path), insert, durable=False)


def _postgresql(dsn: str, url: str) -> Target:
    from tests._pg_util import query

    def insert(row: Row) -> None:
        query(
            dsn,
            "INSERT INTO notipipe_messages (kind, created_at, priority, address, subject, body,"
            " origin_host, origin_pid) VALUES (%s, %s, %s, %s, %s, %s, 'other-tool', 1)",
            row,
        )

    return Target(url, insert, durable=True)


def _nats(url: str) -> Target:
    from notipipe._storage.nats.client import NatsClient, parse_target
    from notipipe._storage.nats.codec import CODEC

    def insert(row: Row) -> None:
        client = NatsClient(parse_target(url), "test: another tool")
        client.connect()
        try:
            data = CODEC.encode_chunk([row])
            client.call(lambda: client.js.publish(client.target.subject, data))
        finally:
            client.close()

    return Target(url, insert, durable=True)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("nats", marks=pytest.mark.nats),
    ]
)
def target(request: pytest.FixtureRequest, impl: Impl, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        made = _sqlite(tmp_path / "alerts.db")
    elif request.param == "postgresql":
        made = _postgresql(request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_url"))
    else:
        made = _nats(request.getfixturevalue("nats_url"))
    drop(impl.DatabaseConnection)
    yield made
    drop(impl.DatabaseConnection)


def _follow(db: Any, count: int) -> list[Any]:
    """The first ``count`` alerts ``db.follow(0)`` yields (on a thread, stopped after)."""
    seen: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    pages = db.follow(0, page=2, poll=0.05, stop=stop)

    def run() -> None:
        try:
            for page in pages:
                seen.extend(page)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    thread = threading.Thread(target=run, name="follower")
    thread.start()
    try:
        wait_until(lambda: len(seen) >= count or bool(errors) or not thread.is_alive(), WAIT)
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return seen


_counter = iter(range(10**9))


def _kinds() -> tuple[type, type]:
    """A kind declaring the common fields itself and one on BaseMessage, each registered under a
    name of its own (names are the store's, one class each, process-wide)."""

    @dataclass(frozen=True, slots=True)
    class PushMessage:
        kind: ClassVar[str]  # set by register
        device: str = ""
        title: str = ""
        badge: int = 0
        priority: int = 3
        created_at: float = 0.0
        id: int = 0

    @dataclass(frozen=True, slots=True)
    class PageMessage(BaseMessage):
        who: str
        level: float | None = None
        ack: bool = False

    n = next(_counter)
    _Factory.register(f"stored_push_{n}")(PushMessage)
    _Factory.register(f"stored_page_{n}")(PageMessage)
    return PushMessage, PageMessage


def _shown(message: Any) -> tuple[object, ...]:
    """What a read must give back of a message: its class, kind, own fields and common fields."""
    return (type(message), message.kind, fields_of(message), message.priority, message.created_at, message.id)


def test_a_registered_kind_round_trips_through_every_read_path(impl: Impl, target: Target) -> None:
    push, page = _kinds()
    batch = [
        impl.EmailMessage("ops@example.com", "disk 91%", "on host-3", created_at=1000.0),
        push("pixel-7", 'say "hi"\\\n\x01é😀', 3, priority=5, created_at=1001.0),
        impl.SMSMessage("+15551234567", "db down", priority=4, created_at=1002.0),
        page("bob", 2.5, True, priority=1, created_at=1003.0),
        page("amy", created_at=1004.0),
    ]
    last = push(title="saved alone", created_at=1005.5)
    committed = Seen()
    db = impl.DatabaseConnection(target.url, deliver="after_commit")
    db.subscribe(committed)
    durable = Seen()
    if target.durable:
        assert db.subscribe(durable, durable_name="kinds")
    db.save_many(batch)
    db.save(last, durable=True)
    stored = db.after(0)
    ids = [m.id for m in stored]
    assert all(ids)
    assert ids == sorted(set(ids))
    expected = [_shown(dataclasses.replace(m, id=i)) for m, i in zip([*batch, last], ids, strict=True)]
    assert [_shown(m) for m in stored] == expected
    assert [_shown(m) for m in db.last(6)] == expected
    assert [_shown(m) for m in db.last(2)] == expected[-2:]
    assert [_shown(m) for m in db.after(ids[1], 2)] == expected[2:4]
    assert [_shown(m) for m in _follow(db, 6)] == expected
    assert wait_until(lambda: len(committed.messages) >= 6, WAIT)
    assert [_shown(m) for m in committed.messages] == expected  # after_commit: with the stored ids
    if target.durable:
        assert durable.wait_for(ids, WAIT), durable.ids()
        assert db.unsubscribe(durable)
        assert [_shown(m) for m in durable.messages] == expected
    assert db.count_by_kind() == {"email": 1, "sms": 1, push.kind: 2, page.kind: 2}  # type: ignore[attr-defined]


def test_a_kind_registered_after_a_batch_was_saved_is_saved_too(impl: Impl, tmp_path: Path) -> None:
    # save_many checks a batch's classes against the storable ones it last saw, made again after
    # a registration: a kind registered later is taken, a class never registered still refused.
    push, _ = _kinds()
    drop(impl.DatabaseConnection)
    db = impl.DatabaseConnection(str(tmp_path / "later.db"))
    try:
        assert db.save_many([push("a"), impl.SMSMessage("+15550001000", "b")]) == 2
        _, page = _kinds()
        assert db.save_many([page("c"), page("d")]) == 2

        @dataclass(frozen=True, slots=True)
        class Unregistered(BaseMessage):
            who: str = ""

        with pytest.raises(TypeError, match="cannot store Unregistered"):
            db.save_many([page("e"), Unregistered("f")])
        db.flush()
        assert [m.who for m in db.last(2)] == ["c", "d"]
    finally:
        drop(impl.DatabaseConnection)


def test_a_kind_this_process_never_registered_reads_as_a_stored_alert(impl: Impl, target: Target) -> None:
    db = impl.DatabaseConnection(target.url)
    durable = Seen()
    if target.durable:
        assert db.subscribe(durable, durable_name="ghosts")
    done = run_child(impl, "tests._kinds_children", "write", target.url, timeout=120)
    assert done.returncode == 0, done.stderr
    stored = db.after(0)
    ghost = StoredAlert(
        "ghost", {"device": "pixel-7", "badge": 3}, priority=5, created_at=1001.0, id=stored[1].id
    )
    assert [getattr(m, "body", m) for m in stored] == ["before", ghost, "after"]
    assert [getattr(m, "body", m) for m in db.last(2)] == [ghost, "after"]
    assert [getattr(m, "body", m) for m in _follow(db, 3)] == ["before", ghost, "after"]
    if target.durable:
        assert durable.wait_for([m.id for m in stored], WAIT), durable.ids()
        assert db.unsubscribe(durable)
        assert [getattr(m, "body", m) for m in durable.messages] == ["before", ghost, "after"]
    assert db.count_by_kind() == {"ghost": 1, "sms": 2}


def test_a_row_another_tool_wrote_reads_as_a_stored_alert(impl: Impl, target: Target) -> None:
    db = impl.DatabaseConnection(target.url)
    durable = Seen()
    if target.durable:
        assert db.subscribe(durable, durable_name="foreign")
    db.save(impl.SMSMessage(body="before", created_at=1000.0), durable=True)
    target.insert(("ticket", 1001.0, 2, "desk-7", "printer", "out of toner"))
    db.save(impl.SMSMessage(body="after", created_at=1002.0), durable=True)
    stored = db.after(0)
    raw = {"address": "desk-7", "subject": "printer", "body": "out of toner"}
    ticket = StoredAlert("ticket", raw, priority=2, created_at=1001.0, id=stored[1].id)
    assert [getattr(m, "body", m) for m in stored] == ["before", ticket, "after"]
    assert [getattr(m, "body", m) for m in _follow(db, 3)] == ["before", ticket, "after"]
    if target.durable:
        assert durable.wait_for([m.id for m in stored], WAIT), durable.ids()
        assert db.unsubscribe(durable)
        assert [getattr(m, "body", m) for m in durable.messages] == ["before", ticket, "after"]


def test_a_changed_kind_reads_its_old_rows(
    impl: Impl, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"stored_changed_{next(_counter)}"

    @dataclass(frozen=True, slots=True)
    class V1(BaseMessage):
        device: str = ""
        gone: int = 0

    @dataclass(frozen=True, slots=True)
    class V2(BaseMessage):
        device: str = ""
        sound: str = "ping"  # new, with a default; "gone" is no longer a field

    @dataclass(frozen=True, slots=True)
    class V3(BaseMessage):
        device: str = ""
        owner: str = field(kw_only=True)  # new, without a default

    _Factory.register(name)(V1)
    db = impl.DatabaseConnection(target.url)
    db.save_many([V1("pixel", 1, created_at=1000.0), impl.SMSMessage(body="sms", created_at=1001.0)])
    db.save(V1("tablet", 2, created_at=1002.0), durable=True)
    ids = [m.id for m in db.after(0)]
    _Factory.register(name, replace=True)(V2)
    assert db.after(0) == [
        V2("pixel", priority=3, created_at=1000.0, id=ids[0]),
        impl.SMSMessage(body="sms", created_at=1001.0, id=ids[1]),
        V2("tablet", created_at=1002.0, id=ids[2]),
    ]
    _Factory.register(name, replace=True)(V3)
    with caplog.at_level(logging.WARNING, "notipipe"):
        for _ in range(2):  # said once, however often the rows are read
            assert [type(m) for m in db.after(0)] == [StoredAlert, impl.SMSMessage, StoredAlert]
            assert [m.kind for m in _follow(db, 3)] == [name, "sms", name]
        db.save(V3("phone", owner="ops", created_at=1003.0), durable=True)
        assert db.last(1) == [V3("phone", owner="ops", created_at=1003.0, id=db.last(1)[0].id)]
    assert db.after(0)[0] == StoredAlert(name, {"device": "pixel", "gone": 1}, created_at=1000.0, id=ids[0])
    assert [r.getMessage() for r in caplog.records if r.name == "notipipe"] == [
        f"notipipe: {name} rows from id {ids[0]} lack 'owner', which has no default: read as StoredAlert"
    ]
