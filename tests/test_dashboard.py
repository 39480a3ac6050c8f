"""The dashboard's server side, without a browser: SSE framing and ids, resuming from
``Last-Event-ID``, the per-browser queue bounded in bytes, browsers that never read, the Host
names and the token it answers, and ``notipipe serve``'s command line.

The ``/events`` stream is driven as an ASGI application by hand (no HTTP in between), against
each twin's ``DatabaseConnection`` and ``Publisher``. Needs the dashboard extra
(``pip install 'notipipe[dashboard]'``): without it these tests fail saying so.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests._dashboard_procs import Children, children, stop
from tests._processes import ROOT, kill, wait_until
from tests._stuck_clients import hung_up, read_to_the_end, stuck_client
from tests.conftest import Impl, drop

try:
    from notipipe.cli.dashboard import Dashboard
    from notipipe.cli.dashboard._feed import Page
except ModuleNotFoundError as missing:  # pragma: no cover - the failure below says what to do
    _MISSING: str | None = f"{missing.name} is missing: pip install 'notipipe[dashboard]'"
else:
    _MISSING = None

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens the DatabaseConnection singleton"),
]
#: Long enough for a busy machine; a test that waits this long has failed.
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _dashboard_installed() -> None:
    if _MISSING is not None:
        pytest.fail(_MISSING, pytrace=False)


# -- helpers -------------------------------------------------------------------------------------


def _alerts(impl: Impl, n: int, start: int = 0) -> list[Any]:
    made: list[Any] = []
    for i in range(start, start + n):
        if i % 3 == 2:
            made.append(impl.SMSMessage(f"+1555000{i:04d}", f"sms {i}", priority=1 + i % 5))
        else:
            made.append(impl.EmailMessage(f"ops{i}@example.com", f"subject {i}", "body", priority=1 + i % 5))
    return made


class Store:
    """A file database of one twin, written to by the test and followed by a ``Dashboard``."""

    def __init__(self, impl: Impl, path: Path) -> None:
        self.impl = impl
        self.db = impl.DatabaseConnection(path)
        self.written = 0
        self.published: list[int] = []  # the last id of each page the hub published
        self._published = threading.Condition()

    def write(self, n: int) -> int:
        """Store ``n`` more alerts durably; the last id."""
        self.db.save_many(_alerts(self.impl, n, self.written), durable=True)
        self.written += n
        return int(self.db.last(1)[-1].id)

    def dashboard(self, **options: Any) -> Dashboard:
        dashboard = Dashboard(self.db, hub=self.impl.Publisher(), **options)
        dashboard.hub.subscribe(self)  # a synchronous probe: which pages went out
        return dashboard

    def update(self, page: Page) -> None:  # on the follower thread
        with self._published:
            self.published.append(page.last_id)
            self._published.notify_all()

    def wait_published(self, last_id: int) -> None:
        """Until the follower has published the page holding ``last_id``."""
        with self._published:
            assert self._published.wait_for(
                lambda: bool(self.published) and self.published[-1] >= last_id, TIMEOUT
            ), f"the follower never published {last_id}"


@pytest.fixture
def store(impl: Impl, tmp_path: Path) -> Iterator[Store]:
    drop(impl.DatabaseConnection)
    yield Store(impl, tmp_path / "alerts.db")
    drop(impl.DatabaseConnection)


@pytest.fixture
def following(store: Store) -> Iterator[Callable[..., Dashboard]]:
    """Start a dashboard over ``store`` (its follower stopped after the test)."""
    started: list[Dashboard] = []

    def start(**options: Any) -> Dashboard:
        dashboard = store.dashboard(**options)
        dashboard.start()
        started.append(dashboard)
        return dashboard

    yield start
    for dashboard in started:
        dashboard.stop()


class Browser:
    """One ``GET /events`` to the dashboard's ASGI app, read as a browser's EventSource would."""

    def __init__(
        self, dashboard: Dashboard, *, headers: dict[str, str] | None = None, query: str = ""
    ) -> None:
        self.messages: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.open = asyncio.Event()  # cleared: sends wait (a browser that reads nothing)
        self.open.set()
        self.send_delay = 0.0
        self.ended = False
        self._buffer = b""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/events",
            "raw_path": b"/events",
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }
        self._requested = False
        self.task = asyncio.ensure_future(dashboard.events(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self.open.wait()
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        await self.messages.put(message)

    async def start(self) -> MutableMapping[str, Any]:
        """The response's start (status and headers)."""
        message = await asyncio.wait_for(self.messages.get(), TIMEOUT)
        assert message["type"] == "http.response.start"
        return message

    async def event(self) -> dict[str, Any] | None:
        """The next event (``event``, ``id``, ``data`` parsed), or None once the response ended."""
        while b"\n\n" not in self._buffer:
            if self.ended:
                return None
            message = await asyncio.wait_for(self.messages.get(), TIMEOUT)
            assert message["type"] == "http.response.body"
            self._buffer += message["body"]
            self.ended = not message.get("more_body", False)
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        fields: dict[str, Any] = {}
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            assert name not in fields, f"{name} twice in one event: {block!r}"
            fields[name] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
        return fields

    async def alerts_until(self, last_id: int) -> list[dict[str, Any]]:
        """``alerts`` events up to the one holding ``last_id``."""
        events: list[dict[str, Any]] = []
        while not events or int(events[-1]["id"]) < last_id:
            event = await self.event()
            assert event is not None, f"the stream ended before {last_id}: {events}"
            if "event" in event:
                assert event["event"] == "alerts", event
                events.append(event)
        return events

    async def close(self) -> None:
        self.gone.set()
        self.open.set()
        await asyncio.wait_for(self.task, TIMEOUT)


def _ids(events: list[dict[str, Any]]) -> list[int]:
    return [i for e in events for first, last in e["data"]["ids"] for i in range(first, last + 1)]


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine(), 4 * TIMEOUT)

    asyncio.run(bounded())


# -- framing and ids -----------------------------------------------------------------------------


def test_a_new_browser_gets_a_snapshot_then_each_alert_once_with_its_stored_id(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    first = store.write(30)
    dashboard = following()

    async def main() -> None:
        browser = Browser(dashboard)
        start = await browser.start()
        assert start["status"] == 200
        assert dict(start["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
        assert await browser.event() == {"retry": "1000"}
        snapshot = await browser.event()
        assert snapshot is not None
        assert snapshot["event"] == "snapshot"
        assert snapshot["id"] == str(first)
        counts = store.db.count_by_kind_and_priority()
        assert snapshot["data"]["kinds"] == store.db.count_by_kind()
        assert sum(snapshot["data"]["priorities"].values()) == sum(counts.values()) == 30
        assert [a["id"] for a in snapshot["data"]["latest"]] == [m.id for m in store.db.last(20)]

        last = store.write(50)
        events = await browser.alerts_until(last)
        assert _ids(events) == list(range(first + 1, last + 1))
        for event in events:  # each event's id is the stored id of its last alert
            assert int(event["id"]) == event["data"]["ids"][-1][1]
            assert sum(event["data"]["kinds"].values()) == len(event["data"]["at"])
        stored = {m.id: m for m in store.db.after(first, 100)}
        for event in events:
            for alert in event["data"]["latest"]:
                m = stored[alert["id"]]
                assert (alert["kind"], alert["priority"], alert["at"]) == (m.kind, m.priority, m.created_at)
                assert alert["text"] == (m.subject if m.kind == "email" else m.body)
        await browser.close()
        assert dashboard.browsers == 1  # the probe alone: the browser's subscription ended

    run(main)


def test_line_breaks_in_an_alert_cannot_break_the_event_framing(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    dashboard = following()
    tricky = "one\ntwo\r\nthree\rfour\n\nid: 99\ndata: x"

    async def main() -> None:
        browser = Browser(dashboard)
        await browser.start()
        assert await browser.event() == {"retry": "1000"}
        await browser.event()  # the (empty) snapshot
        # A subject may hold no line break; an SMS body (shown as the alert's text) may.
        store.db.save(store.impl.SMSMessage("+15550001", tricky), durable=True)
        (event,) = await browser.alerts_until(1)
        assert event["id"] == "1"
        assert event["data"]["latest"][0]["text"] == tricky
        await browser.close()

    run(main)


# -- resuming ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"Last-Event-ID": "37"}},
        {"query": "after=37"},
        {"headers": {"Last-Event-ID": "37"}, "query": "after=5"},
    ],
)
def test_a_reconnecting_browser_resumes_after_its_last_event_id(
    store: Store, following: Callable[..., Dashboard], how: dict[str, Any]
) -> None:
    written = store.write(100)
    dashboard = following()

    async def main() -> None:
        browser = Browser(dashboard, **how)
        await browser.start()
        assert await browser.event() == {"retry": "1000"}
        replayed = await browser.alerts_until(written)  # no snapshot: straight to what it missed
        last = store.write(20)
        live = await browser.alerts_until(last)
        assert _ids(replayed + live) == list(range(38, last + 1))
        await browser.close()

    run(main)


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1e3", "99999999999999999999", "٣"])
def test_a_last_event_id_that_is_no_alert_id_is_refused(
    store: Store, following: Callable[..., Dashboard], bad: str
) -> None:
    dashboard = following()

    async def main() -> None:
        browser = Browser(dashboard, headers={"Last-Event-ID": bad})
        start = await browser.start()
        assert start["status"] == 400
        body = await asyncio.wait_for(browser.messages.get(), TIMEOUT)
        assert b"Last-Event-ID must be an alert id" in body["body"]
        await browser.close()
        assert dashboard.browsers == 1  # the probe alone

    run(main)


@pytest.mark.parametrize("bad", [str(2**63), str(10**19 - 1), "9" * 19])
def test_a_last_event_id_past_the_largest_id_is_refused_with_the_range(
    store: Store, following: Callable[..., Dashboard], bad: str
) -> None:
    # 19 digits, yet no id a store holds (0..2**63-1): refused before any read, by header or query.
    dashboard = following()

    async def main() -> None:
        for how in ({"headers": {"Last-Event-ID": bad}}, {"query": f"after={bad}"}):
            browser = Browser(dashboard, **how)
            start = await browser.start()
            body = await asyncio.wait_for(browser.messages.get(), TIMEOUT)
            assert (start["status"], body["body"]) == (
                400,
                f"Last-Event-ID must be an alert id (a whole number in 0..2**63-1), got {bad!r}".encode(),
            )
            await browser.close()
        assert dashboard.browsers == 1  # the probe alone

    run(main)


def test_reads_past_the_largest_id_raise_a_value_error_naming_the_range(store: Store) -> None:
    store.write(3)
    assert [m.id for m in store.db.after(2**63 - 2)] == []
    calls: list[tuple[str, Callable[[], object]]] = [
        ("message_id", lambda: store.db.after(2**63)),
        ("message_id", lambda: store.db.after(10**19 - 1, 10)),
        ("limit", lambda: store.db.after(0, 2**63)),
        ("n", lambda: store.db.last(2**63)),
        ("upto_id", lambda: store.db.count_by_kind_and_priority(2**63)),
        ("after_id", lambda: store.db.follow(2**63)),
    ]
    for name, call in calls:
        range_error = rf"^{name} must be in 0\.\.2\*\*63-1 \(the ids a store holds\), got \d+$"
        with pytest.raises(ValueError, match=range_error):
            call()


def test_browsers_that_connect_while_alerts_are_written_miss_none(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    # Each browser subscribes before it reads where to start; a page published while it sends
    # its snapshot or replay (made slow here) is queued, not lost.
    store.write(10)
    dashboard = following()
    stop_writing = threading.Event()

    def writer() -> None:
        while not stop_writing.is_set():
            store.write(7)

    async def main() -> None:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for resume in (None, "3", None, "8", None, "1"):
                browser = Browser(dashboard, headers={"Last-Event-ID": resume} if resume else None)
                browser.send_delay = 0.03
                await browser.start()
                await browser.event()  # retry
                if resume is None:
                    snapshot = await browser.event()
                    assert snapshot is not None
                    start = int(snapshot["id"])
                else:
                    start = int(resume)
                target = int(store.db.last(1)[-1].id) + 30
                events = await browser.alerts_until(target)
                assert _ids(events) == list(range(start + 1, int(events[-1]["id"]) + 1))
                await browser.close()
        finally:
            stop_writing.set()
            await asyncio.to_thread(thread.join)

    run(main)


# -- the bounded queue ---------------------------------------------------------------------------


def test_a_browser_too_slow_is_cut_off_at_its_last_whole_event_and_resumes_from_the_database(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    before = store.write(5)
    # A few pages' frames fit (each of 3 alerts, under 1,000 bytes); a write may wait long.
    dashboard = following(queue_bytes=3000, stall=TIMEOUT)

    async def main() -> None:
        slow = Browser(dashboard)
        await slow.start()
        await slow.event()  # retry
        snapshot = await slow.event()
        assert snapshot is not None
        assert snapshot["id"] == str(before)
        slow.open.clear()  # it stops reading
        # Twelve pages, each published before the next is written: far more than it may hold.
        last = before
        for _ in range(12):
            last = store.write(3)
            await asyncio.to_thread(store.wait_published, last)
        slow.open.set()
        events: list[dict[str, Any]] = []
        while (not events or int(events[-1]["id"]) < last) and (event := await slow.event()) is not None:
            events.append(event)
        received = _ids(events)
        assert received == list(range(before + 1, before + 1 + len(received)))  # no gap
        assert received[-1] < last  # it did fall behind
        assert slow.ended  # the response ended there, and with it the subscription
        await slow.close()
        assert dashboard.browsers == 1  # the probe alone

        # Its EventSource reconnects with the id of the last event it received whole.
        again = Browser(dashboard, headers={"Last-Event-ID": events[-1]["id"]})
        await again.start()
        await again.event()  # retry
        rest = await again.alerts_until(last)
        assert received + _ids(rest) == list(range(before + 1, last + 1))
        await again.close()

    run(main)


def test_a_browser_that_goes_away_is_unsubscribed(store: Store, following: Callable[..., Dashboard]) -> None:
    dashboard = following()

    async def main() -> None:
        browsers = [Browser(dashboard) for _ in range(3)]
        for browser in browsers:
            await browser.start()
            await browser.event()
            await browser.event()
        assert dashboard.browsers == 4
        for browser in browsers:
            await browser.close()
        assert dashboard.browsers == 1

    run(main)


def test_the_follower_lag_counts_what_is_stored_after_what_the_follower_read(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    dashboard = following()
    store.wait_published(store.write(10))
    assert dashboard.follower_lag() == 0
    reached, release = threading.Event(), threading.Event()

    class Stuck:
        """Holds the follower inside a page's fan-out (its alerts counted already)."""

        def update(self, page: Page) -> None:
            reached.set()
            release.wait(TIMEOUT)

    dashboard.hub.subscribe(Stuck())
    try:
        store.write(5)
        assert reached.wait(TIMEOUT), "the follower never read the 5 alerts"
        store.write(7)
        assert dashboard.follower_lag() == 7
    finally:
        release.set()
    assert wait_until(lambda: dashboard.follower_lag() == 0, TIMEOUT)


def test_without_a_follower_there_is_no_follower_lag(store: Store) -> None:
    store.write(3)
    assert store.dashboard().follower_lag() is None


def test_a_database_that_cannot_be_read_gives_no_follower_lag_not_an_error(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    # /metrics answers with the rest when the database is in trouble: the lag is left out.
    dashboard = following()
    store.wait_published(store.write(4))
    assert dashboard.follower_lag() == 0
    store.db.close()
    assert dashboard.follower_lag() is None


def test_a_page_holds_what_the_page_shows_never_an_email_body(
    store: Store, following: Callable[..., Dashboard]
) -> None:
    # A browser that falls behind holds pages: they must not pin the alerts' full text.
    dashboard = following()
    body = "B" * 1024
    pages: list[Page] = []

    class Probe:
        def update(self, page: Page) -> None:  # on the follower thread
            pages.append(page)

    probe = Probe()
    dashboard.hub.subscribe(probe)
    store.db.save(store.impl.EmailMessage("ops@example.com", "disk", body), durable=True)
    assert wait_until(lambda: bool(pages), TIMEOUT)
    (page,) = pages
    assert body.encode() not in page.frame
    reachable = [page, *gc.get_referents(page)]
    reachable += [inner for outer in reachable[1:] for inner in gc.get_referents(outer)]
    assert not [obj for obj in reachable if hasattr(obj, "body")], "a page holds an alert"


# -- any kind (issue 22) ---------------------------------------------------------------------------


def _frame_data(frame: bytes) -> dict[str, Any]:
    data = [line for line in frame.decode().splitlines() if line.startswith("data: ")]
    assert len(data) == 1, frame
    parsed: dict[str, Any] = json.loads(data[0].removeprefix("data: "))
    return parsed


def test_the_page_shows_any_kind_by_its_first_field_and_the_rest() -> None:
    from notipipe import StoredAlert
    from notipipe.cli.dashboard._feed import alert_shown, alerts_frame

    push = StoredAlert(
        "push", {"device": "pixel-7", "title": "disk full", "badge": 2}, priority=4, created_at=1.5, id=17
    )
    bare = StoredAlert("ping", {}, id=18)
    shown = {"id": 17, "kind": "push", "priority": 4, "at": 1.5, "to": "device=pixel-7"}
    assert alert_shown(push) == {**shown, "text": "title=disk full · badge=2"}
    assert (alert_shown(bare)["to"], alert_shown(bare)["text"]) == ("", "")
    # As the follower frames it for every browser: counted under its own kind, shown in the list.
    data = _frame_data(alerts_frame([push, bare]))
    assert (data["kinds"], data["ids"]) == ({"push": 1, "ping": 1}, [[17, 18]])
    assert data["latest"] == [alert_shown(push), alert_shown(bare)]


def test_the_page_shows_the_built_in_kinds_as_always_from_either_twin(impl: Impl) -> None:
    from notipipe.cli.dashboard._feed import alert_shown

    email = impl.EmailMessage("ops@example.com", "disk", "a long body", priority=2, created_at=1.0, id=1)
    sms = impl.SMSMessage("+15550001111", "cpu hot", created_at=2.0, id=2)
    assert alert_shown(email) == {
        "id": 1, "kind": "email", "priority": 2, "at": 1.0, "to": "ops@example.com", "text": "disk"
    }  # fmt: skip
    assert alert_shown(sms) == {
        "id": 2, "kind": "sms", "priority": 3, "at": 2.0, "to": "+15550001111", "text": "cpu hot"
    }  # fmt: skip


# -- the new read ----------------------------------------------------------------------------------


def test_count_by_kind_and_priority_counts_up_to_an_id(store: Store) -> None:
    assert store.db.count_by_kind_and_priority() == {}
    store.write(10)
    everything = store.db.count_by_kind_and_priority()
    assert sum(everything.values()) == 10
    assert everything[("email", 1)] == sum(
        1 for m in store.db.after(0, 100) if m.kind == "email" and m.priority == 1
    )
    upto = store.db.count_by_kind_and_priority(4)
    assert upto == {(m.kind, m.priority): 1 for m in store.db.after(0, 4)}
    assert store.db.count_by_kind_and_priority(0) == {}
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match=r"^upto_id must be a non-negative int, got "):
            store.db.count_by_kind_and_priority(bad)


# -- notipipe serve --------------------------------------------------------------------------------


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notipipe", "serve", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def _seeded(tmp_path: Path) -> Path:
    db = tmp_path / "a.db"
    done = subprocess.run(
        [sys.executable, "-m", "notipipe", "run", "--db", str(db), "-n", "100", "--progress", "none"],
        check=False,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return db


def test_serve_help_says_what_it_needs_and_how_it_ends() -> None:
    done = _serve("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: notipipe serve")
    assert "pip install 'notipipe[dashboard]'" in done.stdout
    assert "/metrics" in done.stdout
    assert "pip install 'notipipe[metrics]'" in done.stdout
    for option in ("--db", "--host", "--port", "$NOTIPIPE_DB", "examples:", "exit status:"):
        assert option in done.stdout
    assert "the dashboard extra is not installed" in done.stdout


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--port", "70000"],
            2,
            "notipipe serve: error: argument --port: 70000 is too large (at most 65,535)",
        ),
        (["--port", "x"], 2, "notipipe serve: error: argument --port: 'x' is not a whole number"),
        (["--host", ""], 2, "notipipe serve: error: argument --host: the path is empty"),
    ],
)
def test_serve_refuses_bad_arguments_in_one_line(args: list[str], status: int, message: str) -> None:
    done = _serve(*args)
    assert (done.returncode, done.stdout) == (status, "")
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1


def test_serve_refuses_a_missing_database(tmp_path: Path) -> None:
    done = _serve("--db", str(tmp_path / "none.db"))
    assert done.returncode == 1
    assert done.stderr == (
        f"notipipe serve: error: {tmp_path / 'none.db'}: no such database "
        f"(run `notipipe run --db {tmp_path / 'none.db'}` first)\n"
    )


def test_serve_refuses_a_postgresql_url_in_one_line() -> None:
    # Browsers resume by stored id, exact only where ids follow commits: not on PostgreSQL.
    done = _serve("--db", "postgresql://nobody@/nothing")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(
        "notipipe serve: error: notipipe serve follows a database whose ids follow commits (a SQLite file);"
    )
    assert done.stderr.count("\n") == 1


def test_serve_says_when_its_port_is_taken(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    with closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _serve("--db", str(db), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.startswith(f"notipipe serve: error: cannot listen on 127.0.0.1:{port}: ")
    assert done.stderr.count("\n") == 1


def test_serve_without_the_extra_exits_2_with_the_install_hint(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    program = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from notipipe.cli import main\n"
        f"sys.exit(main(['serve', '--db', {str(db)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 2
    assert done.stderr == (
        "notipipe serve: error: the dashboard needs its extra: pip install 'notipipe[dashboard]' "
        "(starlette is missing)\n"
    )


def test_serve_serves_the_page_and_the_stream_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = kids.serve(db)
        conn = _connect(url)
        conn.request("GET", "/")
        page = conn.getresponse()
        assert (page.status, page.getheader("content-type")) == (200, "text/html; charset=utf-8")
        assert b'<script src="dashboard.js">' in page.read()
        conn.request("GET", "/dashboard.js")
        script = conn.getresponse()
        assert script.status == 200
        assert b"new EventSource" in script.read()
        stream = _events_from_90(conn)
        # Ctrl-C ends the open stream too, and the command, at once and with status 130.
        status, err = stop(server)
        assert status == 130
        assert err == "notipipe serve: interrupted\n"
        assert _rest(stream) == b""
        conn.close()


def _connect(url: str) -> http.client.HTTPConnection:
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)


def _events_from_90(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """The open event stream of a server of ``_seeded``'s 100 alerts, read up to the last one."""
    conn.request("GET", "/events", headers={"Last-Event-ID": "90"})
    stream = conn.getresponse()
    assert stream.getheader("content-type") == "text/event-stream; charset=utf-8"
    head = b""
    while b"id: 100\n" not in head:
        head += stream.read1()
    assert b"retry: 1000\n\nevent: alerts\nid: 100\ndata: " in head
    return stream


def _rest(stream: http.client.HTTPResponse) -> bytes:
    """What a stream still sends until it ends: the server ended it (or the read times out)."""
    rest = b""
    while chunk := stream.read1():
        rest += chunk
    return rest


def test_sigterm_ends_serve(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = kids.serve(db)
        conn = _connect(url)
        stream = _events_from_90(conn)
        # SIGTERM (kill PID, a service manager's stop) stops it as Ctrl-C does: the open stream
        # ends, then the command, with one line and the status a shell reports for SIGTERM.
        status, err = stop(server, signal.SIGTERM)
        assert (status, err) == (143, "notipipe serve: terminated\n")
        assert _rest(stream) == b""
        conn.close()


def test_serve_started_with_sigint_ignored_keeps_serving_on_ctrl_c(tmp_path: Path) -> None:
    # A background job (`notipipe serve &` in a script) or nohup: SIGINT is ignored from the
    # start and stays so; SIGTERM stops it.
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = kids.serve(db, sigint_ignored=True)
        conn = _connect(url)
        stream = _events_from_90(conn)
        server.send_signal(signal.SIGINT)
        # Still serving: an alert stored after the SIGINT (by a process that takes far longer to
        # start than a handled SIGINT takes to stop the server) reaches the open stream.
        writer = subprocess.run(
            [sys.executable, "-m", "notipipe", "run", "--db", str(db), "-n", "1", "--progress", "none"],
            check=False,
            capture_output=True,
            timeout=TIMEOUT,
        )
        assert writer.returncode == 0, writer.stderr
        more = b""
        while b"id: 101\n" not in more:
            chunk = stream.read1()
            assert chunk, f"the stream ended after SIGINT: {more!r}"
            more += chunk
        assert server.poll() is None
        status, err = stop(server, signal.SIGTERM)
        assert (status, err) == (143, "notipipe serve: terminated\n")
        assert _rest(stream) == b""
        conn.close()


# -- browsers that never read (issue 20, item 14) --------------------------------------------------


def _start_serve(
    kids: Children, db: Path, *options: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``notipipe serve`` of ``db`` on a free port with ``options``; it and the URL it printed."""
    proc = kids.start("serve", "--db", str(db), "--port", "0", *options, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the socket listens
    if not line.startswith("notipipe serve: http://"):
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT)
        raise AssertionError(f"notipipe serve did not start: {line!r} {err!r}")
    return proc, line.split()[2]


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _status(conn: http.client.HTTPConnection) -> dict[str, Any]:
    conn.request("GET", "/status")
    response = conn.getresponse()
    assert response.status == 200, response.read()
    status: dict[str, Any] = json.loads(response.read())
    return status


def _whole_events(stream: bytes) -> list[dict[str, str]]:
    """The events an HTTP/1.0 response of the event stream holds whole (its last may be cut)."""
    _, _, body = stream.partition(b"\r\n\r\n")
    *whole, _ = body.split(b"\n\n")
    events = []
    for block in whole:
        fields = dict(line.partition(": ")[::2] for line in block.decode().split("\n"))
        if "id" in fields:
            events.append(fields)
    return events


def test_browsers_that_never_read_hold_at_most_max_behind_then_are_cut_off_and_resume(
    tmp_path: Path,
) -> None:
    # Laptops asleep with their connections open, while e-mails with 1 KiB bodies are saved as
    # fast as one writer can: each holds at most --max-behind bytes on the server, and is cut
    # off; the events it got whole are a resume point.
    db = _seeded(tmp_path)
    bound, stuck = 262_144, 3
    with children() as kids:
        server, url = _start_serve(kids, db, "--max-behind", str(bound), "--stall-timeout", "10")
        clients = [stuck_client("127.0.0.1", _port(url)) for _ in range(stuck)]
        # One laptop read the start of its stream (its snapshot) before it went to sleep.
        start = b""
        while not _whole_events(start):
            start += clients[0].recv(1024)
        resume_from = int(_whole_events(start)[-1]["id"])
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests._stuck_clients", "write", str(db)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples: list[dict[str, Any]] = []
        with closing(http.client.HTTPConnection("127.0.0.1", _port(url), timeout=TIMEOUT)) as conn:
            try:

                def all_cut_off() -> bool:
                    samples.append(_status(conn))
                    return samples[-1]["cut_off"] >= stuck and not samples[-1]["browsers"]

                assert wait_until(all_cut_off, 4 * TIMEOUT, interval=0.05), samples[-1]
            finally:
                kill(writer)
            assert samples[-1]["cut_off"] == stuck
            held = [browser["queued_bytes"] for sample in samples for browser in sample["browsers"]]
            assert 0 < max(held) <= bound, max(held)  # they fell behind, and no further than the bound

            # Cut off: reset, not left to close once the client reads (it never would).
            assert wait_until(lambda: all(hung_up(sock) for sock in clients), TIMEOUT), "not cut off"
            for sock in clients:
                with sock:
                    assert read_to_the_end(sock, TIMEOUT)[1]

            # Its EventSource reconnects from the last event it received whole: the next alert on.
            conn.request("GET", "/events", headers={"Last-Event-ID": str(resume_from)})
            stream = conn.getresponse()
            head = b""
            while b"event: alerts\n" not in head or not head.endswith(b"\n\n"):
                head += stream.read1()
            first = json.loads(_whole_events(b"\r\n\r\n" + head)[0]["data"])
            assert first["ids"][0][0] == resume_from + 1
        assert stop(server)[0] == 130


def test_a_stuck_browser_is_reset_whatever_x_forwarded_for_it_sends_and_no_other_is(
    tmp_path: Path,
) -> None:
    # The connection to reset is the request's own, not one found by an address: a client's
    # X-Forwarded-For claims any address, another browser's (127.0.0.1 and its port) included.
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = _start_serve(kids, db, "--max-behind", str(262_144), "--stall-timeout", "5")
        port = _port(url)
        reader = stuck_client("127.0.0.1", port, receive_buffer=None)
        reader_port = reader.getsockname()[1]
        read: list[tuple[bytes, bool]] = []
        reading = threading.Thread(target=lambda: read.append(read_to_the_end(reader, 4 * TIMEOUT)))
        reading.start()
        clients = [
            stuck_client("127.0.0.1", port, forwarded_for=address)
            for address in (f"127.0.0.1:{reader_port}", "10.9.9.9")
        ]
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests._stuck_clients", "write", str(db)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples: list[dict[str, Any]] = []
        try:
            with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)) as conn:

                def both_cut_off() -> bool:
                    samples.append(_status(conn))
                    return int(samples[-1]["cut_off"]) >= len(clients)

                assert wait_until(both_cut_off, 4 * TIMEOUT, interval=0.05), samples[-1]
                assert reading.is_alive(), (
                    f"the reading browser was cut off: {[len(got) for got, _ in read]} bytes"
                )
                assert wait_until(lambda: all(hung_up(sock) for sock in clients), TIMEOUT), "not reset"
                assert _status(conn)["cut_off"] == len(clients)
        finally:
            kill(writer)
            for sock in clients:
                sock.close()
        assert stop(server)[0] == 130
        reading.join(TIMEOUT)
        with reader:
            assert read, "the reading browser's stream did not end with the server"
            assert read[0][1], "the reading browser's stream did not end with the server"


# -- the Host names and the token it answers (issue 20, item 16) --------------------------------------


def _ask(port: int, path: str, host: str | None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1:``port`` with ``host`` in Host: the status, and the body of any
    answer but an event stream."""
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)) as conn:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        streaming = response.getheader("content-type", "").startswith("text/event-stream")
        return response.status, b"" if streaming else response.read()


PATHS = ("/", "/dashboard.js", "/events", "/status")


def test_serve_answers_only_the_host_names_it_serves(tmp_path: Path) -> None:
    # A page elsewhere that rebinds its name to 127.0.0.1 sends its own name in Host: refused.
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = _start_serve(kids, db, "--allow-host", "Alerts.Example:8443")
        port = _port(url)
        assert urlsplit(url).query == ""  # loopback: no token
        for name in ("127.0.0.1", "localhost", "[::1]", "alerts.example", "ALERTS.Example.", "LocalHost"):
            for path in PATHS:
                assert _ask(port, path, f"{name}:{port}")[0] == 200, (name, path)
        assert _ask(port, "/", "localhost")[0] == 200  # no port
        for name in (
            "evil.example",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "0.0.0.0",
            "alerts.example.evil",
        ):
            for path in PATHS:
                status, body = _ask(port, path, f"{name}:{port}")
                assert status == 421, (name, path, status)
                assert (
                    body
                    == (
                        f"this dashboard does not serve the name {name!r}: start notipipe serve with "
                        f"--allow-host {name} to serve it"
                    ).encode()
                )
        for bad in ("", "a b", "evil.example:x", "[::1"):
            assert _ask(port, "/", bad)[0] == 400, bad
        with closing(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)) as sock:
            sock.sendall(b"GET /status HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave Host out
            assert read_to_the_end(sock, TIMEOUT)[0].startswith(b"HTTP/1.1 400 ")
        assert stop(server)[0] == 130


def test_serve_beyond_loopback_needs_its_token_which_the_printed_url_carries(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    with children() as kids:
        server, url = _start_serve(kids, db, "--host", "0.0.0.0")
        port = _port(url)
        here = f"127.0.0.1:{port}"
        for path in ("/", "/events", "/status", "/?token=", "/events?token=wrong-token-of-32-characters"):
            status, body = _ask(port, path, here)
            assert status == 401, (path, status)
            assert body.startswith(b"this dashboard needs its token: open the URL notipipe serve printed")
        assert _ask(port, "/", here, {"Authorization": "Bearer not-the-token-at-all"})[0] == 401
        # The printed URL names a loopback address (it listens on every one) and carries the token.
        parts = urlsplit(url)
        (token,) = parse_qs(parts.query)["token"]
        assert (parts.hostname, parts.path, len(token) >= 32) == ("127.0.0.1", "/", True)
        for path in PATHS:
            assert _ask(port, f"{path}?token={token}", here)[0] == 200, path
            assert _ask(port, path, here, {"Authorization": f"Bearer {token}"})[0] == 200, path
        assert _ask(port, f"/events?after=50&token={token}", here)[0] == 200
        assert _ask(port, "/dashboard.js", here)[0] == 200  # the script holds no alert
        # The token does not make another Host name served.
        assert _ask(port, f"/?token={token}", f"evil.example:{port}")[0] == 421
        assert stop(server)[0] == 130


def test_a_token_the_user_chooses_is_required_on_loopback_too(tmp_path: Path) -> None:
    db = _seeded(tmp_path)
    token = "a-token-of-our-own-choosing"
    with children() as kids:
        for options, env in ((["--token", token], None), ([], {"NOTIPIPE_TOKEN": token})):
            server, url = _start_serve(kids, db, *options, env=env)
            port = _port(url)
            assert urlsplit(url).query == f"token={token}"
            assert _ask(port, "/", f"localhost:{port}")[0] == 401
            assert _ask(port, f"/?token={token}", f"localhost:{port}")[0] == 200
            assert stop(server)[0] == 130


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--token", "short"], None, "argument --token: the token must be at least 16 characters long"),
        (["--token", "sixteen chars ok"], None, "argument --token: the token may hold only letters, digits"),
        (["--allow-host", "a b"], None, "argument --allow-host: 'a b' is not a host name"),
        (["--max-behind", "1000"], None, "argument --max-behind: must be at least 262144"),
        (["--stall-timeout", "0"], None, "argument --stall-timeout: must be at least 1"),
        ([], {"NOTIPIPE_TOKEN": "short"}, "$NOTIPIPE_TOKEN: the token must be at least 16 characters long"),
    ],
)
def test_serve_refuses_a_bad_token_host_or_bound_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str] | None, message: str
) -> None:
    db = _seeded(tmp_path)
    done = _serve("--db", str(db), "--port", "0", *args, env=env)
    assert (done.returncode in (1, 2), done.stdout) == (True, "")
    assert done.stderr.startswith(f"notipipe serve: error: {message}"), done.stderr
    assert done.stderr.count("\n") == 1


def test_serve_help_explains_hosts_tokens_and_slow_browsers() -> None:
    done = _serve("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for said in (
        "--allow-host NAME",
        "--token TOKEN",
        "$NOTIPIPE_TOKEN",
        "127.0.0.1, localhost, [::1]",
        "gets 421",
        "DNS rebinding",
        "Authorization: Bearer TOKEN",
        "gets 401",
        "--max-behind BYTES",
        "--stall-timeout SECONDS",
    ):
        assert said in text, said
