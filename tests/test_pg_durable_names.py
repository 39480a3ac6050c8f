"""Durable names against a real PostgreSQL server: one holder at a time even when the holder's
connection is cut mid-page; names whose ``hashtext`` collides held apart; stopping between
alerts with an exact cursor; and every connection made the same way (keepalives, the URL's
settings first)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from notipipe._storage.postgresql.schema import SCHEMA_SQL, SUBSCRIPTIONS
from notipipe._storage.postgresql.subscribers import list_subscriptions
from tests._pg_rows import Seen, create_schema, write_batch, write_many
from tests._pg_util import as_url, query
from tests._processes import kill, spawn, wait_until
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="waits on child processes and the DatabaseConnection singleton"),
]


def _subscriber_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("notipipe-subscriber-")]


def _states(dsn: str) -> dict[str, Any]:
    return {s.name: s for s in list_subscriptions(as_url(dsn))}


class _Timed(Seen):
    """An observer that notes when each ``update`` call starts (``time.monotonic``: one clock
    for every process of the machine), and may take ``delay`` seconds per call."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.starts: list[float] = []
        self._delay = delay
        self.third = threading.Event()

    def update(self, message: Any) -> None:
        self.starts.append(time.monotonic())
        super().update(message)
        if len(self.starts) == 3:
            self.third.set()
        if self._delay:
            time.sleep(self._delay)  # the observer's own slowness


# -- item 7: a holder cut off mid-page ------------------------------------------------------------


def _calls(out: Path) -> list[tuple[float, int]]:
    """``(start time, id)`` per ``update`` call the timed subscriber process noted."""
    if not out.exists():
        return []
    return [(float(t), int(i)) for t, i in (line.split() for line in out.read_text().splitlines())]


def _holder_backend(dsn: str, pid: int) -> int:
    """The server process of the session through which process ``pid`` holds its durable name."""
    found: list[int] = []

    def holds() -> bool:
        rows = query(
            dsn,
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
            (f"notipipe subscriber {pid}@%",),
        )
        found[:] = [int(r[0]) for r in rows]
        return bool(found)

    assert wait_until(holds, 30, interval=0.05), "the subscriber process never took its name"
    return found[0]


def _sessions_of(dsn: str, pid: int) -> set[int]:
    """The server processes of the subscriber sessions of process ``pid``."""
    rows = query(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"notipipe subscriber {pid}@%",),
    )
    return {int(r[0]) for r in rows}


@contextlib.contextmanager
def _role(dsn: str) -> Iterator[str]:
    """A DSN for ``dsn``'s database as a login role of its own (a superuser: notipipe needs no
    grants then), which the test may lock out (``ALTER ROLE ... NOLOGIN``); dropped afterwards."""
    name = f"holder_{uuid.uuid4().hex[:12]}"
    query(dsn, f"CREATE ROLE {name} LOGIN SUPERUSER")
    try:
        yield make_conninfo(dsn, user=name)
    finally:
        query(dsn, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
        assert wait_until(
            lambda: not query(dsn, f"SELECT FROM pg_stat_activity WHERE usename = '{name}'"), 30
        )
        query(dsn, f"DROP ROLE {name}")


@pytest.mark.parametrize(
    "calls",
    # (seconds a call sleeps, alerts, page size): a page lasts seconds either way
    [("0.02", 200, 1000), ("0", 300_000, 300_000)],
    ids=["slow-calls", "quick-calls"],
)
def test_a_holder_cut_off_mid_page_makes_no_update_call_once_the_standby_delivers(
    impl: Impl, pg_dsn: str, tmp_path: Path, calls: tuple[str, int, int]
) -> None:
    """The holder's session is ended (``pg_terminate_backend``) while its observer works through a
    page, and it cannot connect again for a while (its role locked out), so the standby takes the
    name over. The old holder stops within ``SESSION_CHECK`` of calls, so no call of the old
    holder starts after the standby's first. With quick calls (a page of seconds of backlog) this
    shows the session checked within a page, not only at its start (a coarser check, every 0.1 s
    say, would still pass: the standby needs longer than that to begin)."""
    delay, alerts, page = calls
    create_schema(pg_dsn)
    out = tmp_path / "holder"
    with _role(pg_dsn) as holder_dsn:
        role = conninfo_to_dict(holder_dsn)["user"]
        holder = spawn(
            impl,
            "tests._pg_children",
            "timed_subscriber",
            as_url(holder_dsn),
            "cut",
            str(out),
            delay,
            "close",
            str(page),
            stdin=True,
        )
        db = impl.DatabaseConnection(as_url(pg_dsn))
        standby = _Timed()
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "subscribed\n"
            backend = _holder_backend(pg_dsn, holder.pid)
            assert db.subscribe(standby, durable_name="cut")
            ids = write_many(pg_dsn, alerts)  # one page: seconds for the holder
            assert wait_until(lambda: len(_calls(out)) >= 10, 30, interval=0.01)
            query(pg_dsn, f"ALTER ROLE {role} NOLOGIN")
            query(pg_dsn, "SELECT pg_terminate_backend(%s)", (backend,))
            assert standby.wait_for([ids[-1]], timeout=30), "the standby did not take over"
            query(pg_dsn, f"ALTER ROLE {role} LOGIN")
            # The old holder is done with its page once it is back, as a standby, on a new session.
            assert wait_until(lambda: bool(_sessions_of(pg_dsn, holder.pid) - {backend}), 30, interval=0.05)
            first = standby.starts[0]
            late = [i for t, i in _calls(out) if t >= first]
            assert late == [], f"the cut-off holder made {len(late)} update calls after the standby began"
            assert {i for _, i in _calls(out)} | set(standby.ids()) == set(ids)
        finally:
            kill(holder)
            assert db.unsubscribe(standby)


# -- item 8: names whose hashtext collides --------------------------------------------------------

_COLLIDING = ("dash-8843", "dash-161045")


def test_names_whose_hashtext_collides_are_held_and_delivered_apart(
    impl: Impl, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from notipipe.cli import main

    create_schema(pg_dsn)
    ((same,),) = query(pg_dsn, "SELECT hashtext(%s) = hashtext(%s)", _COLLIDING)
    assert same, "the premise: these two names have one 32-bit hashtext on this server"
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    first, second = Seen(), Seen()
    assert db.subscribe(first, durable_name=_COLLIDING[0])
    assert db.subscribe(second, durable_name=_COLLIDING[1])
    try:
        ids = write_batch(pg_dsn, ["a", "b"])
        assert first.wait_for(ids)
        assert second.wait_for(ids, timeout=10), "the second name never delivered"
        assert wait_until(lambda: all(s.undelivered == 0 for s in _states(pg_dsn).values()), 30)
        me = f"{os.getpid()}@{os.uname().nodename}"
        assert main(["subscriptions", "--db", url]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
        assert sorted((r[0], r[-1]) for r in rows) == sorted((n, me) for n in _COLLIDING)
        assert db.unsubscribe(second)
        assert main(["subscriptions", "--db", url]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
        assert sorted((r[0], r[-1]) for r in rows) == sorted([(_COLLIDING[0], me), (_COLLIDING[1], "-")])
    finally:
        db.unsubscribe(first)
        db.unsubscribe(second)
    assert first.ids() == ids
    assert second.ids() == ids


#: ``notipipe_subscriptions`` as the schema before per-name lock keys made it.
_OLD_SUBSCRIPTIONS_SQL = f"""
CREATE TABLE {SUBSCRIPTIONS} (
    name        text PRIMARY KEY,
    delivered   pg_snapshot NOT NULL,
    window_end  pg_snapshot,
    window_pos  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""


def test_a_database_made_by_the_old_schema_keeps_its_cursors_and_works(impl: Impl, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(_OLD_SUBSCRIPTIONS_SQL)
        conn.execute(f"INSERT INTO {SUBSCRIPTIONS} (name, delivered) VALUES ('old', pg_current_snapshot())")
    waiting = write_batch(pg_dsn, ["committed after the old cursor"])
    db = impl.DatabaseConnection(as_url(pg_dsn))
    old, new = Seen(), Seen()
    assert db.subscribe(old, durable_name="old")
    assert db.subscribe(new, durable_name="new")
    try:
        assert old.wait_for(waiting), "the old cursor was lost"
        later = write_batch(pg_dsn, ["later"])
        assert old.wait_for(later)
        assert new.wait_for(later)
        assert wait_until(lambda: all(s.undelivered == 0 for s in _states(pg_dsn).values()), 30)
        assert {n: s.holder is not None for n, s in _states(pg_dsn).items()} == {"old": True, "new": True}
    finally:
        assert db.unsubscribe(old)
        assert db.unsubscribe(new)
    assert old.ids() == waiting + later
    assert new.ids() == later


# -- item 9: stopping between alerts --------------------------------------------------------------


def test_an_observer_that_unsubscribes_in_its_first_update_gets_no_other_alert(
    impl: Impl, pg_dsn: str
) -> None:
    create_schema(pg_dsn)
    db = impl.DatabaseConnection(as_url(pg_dsn))

    class Quits(Seen):
        def update(self, message: Any) -> None:
            super().update(message)
            db.unsubscribe(self)

    quitter = Quits()
    assert db.subscribe(quitter, durable_name="quits")
    ids = write_batch(pg_dsn, [f"m {i}" for i in range(50)])  # one page
    assert quitter.wait_for(ids[:1])
    assert wait_until(lambda: not _subscriber_threads(), 30), "delivery went on after unsubscribe"
    assert quitter.ids() == ids[:1]
    assert _states(pg_dsn)["quits"].undelivered == len(ids) - 1, "the cursor is not where delivery stopped"
    again = Seen()
    assert db.subscribe(again, durable_name="quits")
    assert again.wait_for(ids[1:])
    assert db.unsubscribe(again)
    assert again.ids() == ids[1:]


@pytest.mark.parametrize("how", ["unsubscribe", "close"])
def test_unsubscribe_or_close_from_another_thread_stops_a_slow_page_between_alerts(
    impl: Impl, pg_dsn: str, how: str
) -> None:
    create_schema(pg_dsn)
    url = as_url(pg_dsn)
    db = impl.DatabaseConnection(url)
    slow = _Timed(delay=0.02)
    assert db.subscribe(slow, durable_name="slow")
    ids = write_batch(pg_dsn, [f"m {i}" for i in range(200)])  # one page: 4 s of update calls
    assert slow.third.wait(30)
    if how == "unsubscribe":
        assert db.unsubscribe(slow)
    else:
        db.close()
    assert _subscriber_threads() == [], f"{how}() returned with the delivery thread running"
    delivered = slow.ids()
    assert len(delivered) < len(ids), f"{how}() waited for the whole page"
    assert delivered == ids[: len(delivered)]
    assert _states(pg_dsn)["slow"].undelivered == len(ids) - len(delivered), "the cursor is not exact"
    db = impl.DatabaseConnection(url)
    rest = Seen()
    assert db.subscribe(rest, durable_name="slow")
    assert rest.wait_for(ids[len(delivered) :])
    assert db.unsubscribe(rest)
    assert rest.ids() == ids[len(delivered) :]
    assert slow.ids() == delivered


def test_the_atexit_hook_stops_a_slow_page_between_alerts(impl: Impl, pg_dsn: str, tmp_path: Path) -> None:
    """A program that ends with a durable subscriber mid-page: the atexit hook stops it at the
    next alert, and the cursor says exactly what was delivered."""
    create_schema(pg_dsn)
    url, out = as_url(pg_dsn), tmp_path / "delivered"
    proc = spawn(
        impl, "tests._pg_children", "timed_subscriber", url, "exits", str(out), "0.02", "exit", stdin=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "subscribed\n"
        ids = write_batch(pg_dsn, [f"m {i}" for i in range(200)])
        assert wait_until(lambda: len(_calls(out)) >= 3, 30, interval=0.01)
        _, err = proc.communicate(timeout=60)  # closes stdin: the program returns
        assert proc.returncode == 0, err
    finally:
        kill(proc)
    delivered = [i for _, i in _calls(out)]
    assert len(delivered) < len(ids), "the atexit hook waited for the whole page"
    assert delivered == ids[: len(delivered)]
    assert _states(pg_dsn)["exits"].undelivered == len(ids) - len(delivered), "the cursor is not exact"


# -- item 10: every connection made in one place ------------------------------------------------


@contextlib.contextmanager
def _over_tcp(dsn: str) -> Iterator[str]:
    """A ``postgresql://`` URL over TCP to ``dsn``'s database (TCP keepalives exist on TCP only).
    The test cluster listens on a Unix socket only: a port on 127.0.0.1 forwards to it."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    host = params.get("host", "")
    if host and not host.startswith("/"):
        yield as_url(dsn)
        return
    target = os.path.join(host or "/var/run/postgresql", f".s.PGSQL.{params.get('port', '5432')}")
    listener = socket.create_server(("127.0.0.1", 0))
    opened: list[socket.socket] = [listener]

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            server = socket.socket(socket.AF_UNIX)
            server.connect(target)
            opened.extend((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(src, dst), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        yield f"postgresql://{params.get('user', '')}@127.0.0.1:{port}/{params['dbname']}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        for s in opened:
            s.close()


def _keepalive(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """The TCP keepalive settings of ``conn``'s socket, asked of the kernel."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        )


@contextlib.contextmanager
def _every_connection(impl: Impl, url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Open notipipe's connections of every kind on ``url`` (the store's writer, a follower and
    its listener, a durable subscriber and its listener); yield the open ones by purpose (the
    second word of their application name), while all are open."""
    made: list[psycopg.Connection[Any]] = []
    real_connect = psycopg.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        made.append(conn)
        return conn

    monkeypatch.setattr(psycopg, "connect", connect)
    db = impl.DatabaseConnection(url)
    db.save(impl.SMSMessage("+15550100", "first"), durable=True)
    seen, stop = Seen(), threading.Event()
    pages = db.follow(stop=stop)
    try:
        assert [m.body for m in next(pages)] == ["first"]
        assert db.subscribe(seen, durable_name="kept-alive")
        db.save(impl.SMSMessage("+15550100", "second"), durable=True)
        assert wait_until(lambda: bool(seen.ids()), 30)
        by_purpose: dict[str, list[psycopg.Connection[Any]]] = {}
        for conn in made:
            if conn.closed:
                continue
            given = conn.info.get_parameters()
            name = given.get("application_name") or given.get("fallback_application_name") or ""
            if name.startswith("notipipe "):
                by_purpose.setdefault(name.split()[1], []).append(conn)
        assert {"writer", "follow", "listen", "subscriber"} <= set(by_purpose), by_purpose
        yield by_purpose
    finally:
        stop.set()
        pages.close()
        db.close()


def test_followers_and_subscribers_keep_alive_as_the_store_does(
    impl: Impl, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _over_tcp(pg_dsn) as url, _every_connection(impl, url, monkeypatch) as by_purpose:
        (writer,) = by_purpose["writer"]
        store = _keepalive(writer)
        assert store[0] == 1
        got = {(purpose, _keepalive(conn)) for purpose, conns in by_purpose.items() for conn in conns}
    assert {p: k for p, k in got if k != store} == {}, f"not kept alive as the store's own connection {store}"


def test_every_connection_takes_the_urls_own_settings(
    impl: Impl, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = "connect_timeout=7&keepalives_idle=17&options=-c%20work_mem%3D7MB"
    with _over_tcp(pg_dsn) as base, _every_connection(impl, f"{base}?{settings}", monkeypatch) as by_purpose:
        for purpose, conns in by_purpose.items():
            for conn in conns:
                given = conn.info.get_parameters()
                assert given.get("connect_timeout") == "7", (purpose, given)
                assert "-c work_mem=7MB" in given.get("options", ""), (purpose, given)
                assert _keepalive(conn)[1] == 17, purpose
