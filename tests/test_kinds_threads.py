"""Registered kinds under threads (free-threaded builds run them with the GIL off): a kind is
registered while other threads create, save and read instances of kinds registered before, and
call the very class being registered; many threads create and ``_row()`` one kind at once. Every
value of every instance and row is checked: a constructor table or row buffer that threads could
see half-built or share would give a wrong field, a missing one or a wrong row."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from notipipe import BaseMessage
from notipipe._kinds import is_storable
from tests.conftest import Impl

pytestmark = pytest.mark.twin

#: Seconds a thread of these tests may take: far beyond what a loaded machine needs.
WAIT = 120.0
EPOCH = 1_700_000_000.0


@pytest.fixture
def factory(impl: Impl) -> Any:
    """A factory of the test's own over the twin's (whose kinds the other tests count)."""
    return type("Factory", (impl.MessageFactory,), {})


def _kind_class() -> Any:
    """A new kind (a plain dataclass until it is registered): one field of each storable type."""

    @dataclass(frozen=True, slots=True)
    class Alert(BaseMessage):
        device: str
        badge: int = 0
        ratio: float = 0.0
        ok: bool = False
        note: str | None = None

    return Alert


def _register(factory: Any, cls: Any) -> str:
    name = f"threaded_{uuid.uuid4().hex[:12]}"
    factory.register(name)(cls)
    return name


def _make(cls: Any, t: int, i: int) -> Any:
    """Instance ``i`` of thread ``t``: its values say which it is (positional and keyword)."""
    note = None if i % 3 else f"n\u00e9{t}"
    return cls(f"d{t}-{i}", i, t + i / 8, bool(i % 2), note=note, priority=1 + i % 5, created_at=EPOCH + i)


def _check(message: Any, cls: Any, t: int, i: int) -> None:
    """Every value of ``_make(cls, t, i)``, as made or as read back (with a stored id)."""
    note = None if i % 3 else f"n\u00e9{t}"
    got = (type(message), message.device, message.badge, message.ratio, message.ok, message.note)
    assert got == (cls, f"d{t}-{i}", i, t + i / 8, bool(i % 2), note), got
    assert (message.priority, message.created_at) == (1 + i % 5, EPOCH + i)


def _which(message: Any) -> tuple[int, int]:
    """The (thread, instance) a read message says it is."""
    t, i = message.device[1:].split("-")
    return int(t), int(i)


def _run(threads: list[threading.Thread], errors: list[BaseException]) -> None:
    for thread in threads:
        thread.join(WAIT)
    assert not [thread.name for thread in threads if thread.is_alive()]
    if errors:
        raise errors[0]


class _Race:
    """The threads of the registration race: callers call the class last appended to
    ``upcoming`` (the one being registered, mostly) in a loop; savers create instances of the
    kinds registered so far, save them and read back what any thread saved."""

    SAVES = 3000  # per saver: enough to overlap every registration

    def __init__(self, db: Any, ready: list[Any]) -> None:
        self.db = db
        self.ready = len(ready)
        # The classes being registered, each with an event set once a caller has called it; the
        # classes whose registration has returned (whose instances are saved), the ready first.
        self.upcoming: list[tuple[Any, threading.Event]] = [(_kind_class(), threading.Event())]
        self.registered: list[Any] = list(ready)
        self.saved: dict[tuple[int, int], Any] = {}
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def work(self, t: int) -> None:
        try:
            (self.call if t % 2 else self.save_and_read)(t)
        except BaseException as error:  # noqa: BLE001 - re-raised on the test's thread
            self.errors.append(error)
            self.stop.set()

    def call(self, t: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            cls, called = self.upcoming[-1]
            _check(_make(cls, t, i), cls, t, i)
            called.set()

    def save_and_read(self, t: int) -> None:
        cursor, i = 0, 0
        while not self.stop.is_set() and i < self.SAVES:
            i += 1
            # the last registered: just published to the other threads
            cls = self.registered[i % self.ready] if i % 4 else self.registered[-1]
            message = _make(cls, t, i)
            _check(message, cls, t, i)
            self.saved[t, i] = cls  # before it is saved: another thread may read it back at once
            self.db.save(message)
            if i % 64 == 0:
                self.db.flush(WAIT)
                for read in self.db.after(cursor, limit=500):
                    _check(read, self.saved[_which(read)], *_which(read))
                    cursor = read.id


def test_kinds_registered_while_other_threads_create_save_and_read(impl: Impl, factory: Any, db: Any) -> None:
    ready = [_kind_class() for _ in range(2)]
    for cls in ready:
        _register(factory, cls)
    race = _Race(db, ready)
    threads = [threading.Thread(target=race.work, args=(t,), name=f"kinds-worker-{t}") for t in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            cls, called = race.upcoming[-1]
            if not called.wait(WAIT) or race.stop.is_set():  # the callers are calling it: register it now
                break
            _register(factory, cls)
            assert is_storable(cls)
            _check(_make(cls, 99, 7), cls, 99, 7)
            with pytest.raises(TypeError, match=r"Alert\.badge"):  # its constructor checks now
                cls("d", "not a number")
            race.registered.append(cls)
            race.upcoming.append((_kind_class(), threading.Event()))
    finally:
        race.stop.set()
        _run(threads, race.errors)
    db.flush(WAIT)
    stored = db.after(0, limit=len(race.saved) + 1)
    assert len(stored) == len(race.saved)
    for read in stored:
        _check(read, race.saved[_which(read)], *_which(read))
        assert read.id > 0


def _text(t: int, i: int) -> str:
    """Text of every shape the row's JSON writer handles: plain, escaped, non-ASCII, astral,
    longer than its stack buffer."""
    return [
        f"plain {t}/{i}",
        f'quote " backslash \\ tab \t newline \n {t}/{i}',
        f"caf\u00e9 \u20ac {t}/{i}",
        f"astral \U0001f4df {t}/{i}",
        f"long {t}/{i} " + "x" * (600 + i % 7),
    ][i % 5]


def _expected_row(name: str, t: int, i: int) -> tuple[str, float, int, str, str, str]:
    fields = {"text": _text(t, i), "count": i * 1_000_003 - t, "ratio": t / 3 + i, "flag": bool(i % 2)}
    fields["note"] = None if i % 4 == 0 else f"{t}:{i}"
    body = json.dumps({"v": 1, "fields": fields})
    return (name, EPOCH + t + i / 1024, 1 + (t + i) % 5, "", "", body)


def test_many_threads_create_and_row_one_kind_at_once(impl: Impl, factory: Any) -> None:
    threads_count, rounds = 8, 1500

    @dataclass(frozen=True, slots=True)
    class Reading(BaseMessage):
        _row: ClassVar[Callable[[Any], tuple[object, ...]]]  # given by register
        text: str
        count: int
        ratio: float
        flag: bool
        note: str | None = None

    name = _register(factory, Reading)
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait(WAIT)
            for i in range(rounds):
                expected = _expected_row(name, t, i)
                fields = json.loads(expected[5])["fields"]
                message = Reading(**fields, priority=expected[2], created_at=expected[1])
                assert (message.text, message.count, message.ratio, message.flag, message.note) == tuple(
                    fields.values()
                )
                assert (message.priority, message.created_at, message.id) == (expected[2], expected[1], 0)
                assert message._row() == expected
        except BaseException as error:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(error)
            start.abort()

    threads = [threading.Thread(target=work, args=(t,), name=f"row-worker-{t}") for t in range(threads_count)]
    for thread in threads:
        thread.start()
    _run(threads, errors)
