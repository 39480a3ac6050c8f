"""Shared fixtures: every behaviour runs against both twins (compiled and pure).

``impl`` is a session fixture parametrized over the implementations available in this run:
``c`` and ``py`` normally, ``py`` alone when ``NOTIPIPE_NO_EXTENSIONS`` is set. Set
``NOTIPIPE_EXPECT_COMPILED=1`` (the test command does, on its compiled legs) to turn a missing
extension into a failure instead of a quietly pure run.

Under pytest-run-parallel (the free-threaded parallel leg of ``python3 tasks.py test``, nox session
``tests``) every test runs in several threads at once unless it shares process-wide state: see
``_THREAD_UNSAFE_FIXTURES``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import pytest
from hypothesis import HealthCheck, settings

from notipipe._factory import MessageFactory
from notipipe._select import NO_EXTENSIONS
from notipipe._twins import Twin, TwinName, available, load
from tests._nats_server import NatsServer
from tests._pg_server import PgCluster

# ``python3 tasks.py memcheck`` (nox session ``memcheck``) runs the tests under valgrind, tens of
# times slower: no deadline per example.
# times slower: no deadline per example, and fewer examples (each input's memory accesses are what
# valgrind checks; the full example count runs in the test legs).
settings.register_profile(
    "memcheck", deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow]
)

# Where a test runs is said by one of these markers (pyproject.toml declares them; the test task's
# legs select by them): see CONTRIBUTING.md, "Which marker a new test takes".
LEG_MARKERS = ("twin", "system", "typing", "docs")


if TYPE_CHECKING:

    class Impl:
        """One twin (a ``notipipe._twins.Twin``) as the tests see it: its classes typed ``Any``,
        since the tests call them with wrong types and bad arguments on purpose."""

        name: str
        EmailMessage: Any
        SMSMessage: Any
        Publisher: Any
        MessageFactory: type[MessageFactory]
        DatabaseConnection: Any
        messages_module: ModuleType
        publisher_module: ModuleType

else:
    Impl = Twin


def _build(name: TwinName) -> Impl:
    # Built in notipipe._twins, shared with the benchmarks.
    return cast("Impl", load(name))


def _available() -> list[TwinName]:
    if NO_EXTENSIONS:
        return ["py"]
    names = available()
    if os.environ.get("NOTIPIPE_EXPECT_COMPILED", "") not in ("", "0") and names == ["py"]:
        raise RuntimeError("NOTIPIPE_EXPECT_COMPILED is set but notipipe runs pure: the extension is missing")
    # NOTIPIPE_TEST_TWINS=c: the compiled twin alone (the memcheck task: valgrind checks the
    # compiled code; the pure twin's runs there would only cost time).
    only = os.environ.get("NOTIPIPE_TEST_TWINS", "").split(",")
    if only != [""]:
        if unknown := [name for name in only if name not in names]:
            raise RuntimeError(f"NOTIPIPE_TEST_TWINS names {unknown}, not among the twins here: {names}")
        names = [name for name in names if name in only]
    return names


@pytest.fixture(scope="session", params=_available())
def impl(request: pytest.FixtureRequest) -> Impl:
    name: TwinName = request.param
    return _build(name)


#: Seconds a test's left-over connection may take to close at teardown.
CLOSE_AT_TEARDOWN = 60.0


def drop(cls: Any) -> None:
    """Forget ``cls``'s singleton instance, closing its store if it has one.

    ``close()`` waits out a server that is gone, as promised; a test that failed with its
    server killed would leave a teardown that never returns (and a worker that never ends):
    the close gets ``CLOSE_AT_TEARDOWN`` seconds on a daemon thread, then the teardown fails.
    """
    old = cls.reset_instance()
    if old is None or not hasattr(old, "close"):
        return
    failed: list[BaseException] = []

    def close() -> None:
        try:
            old.close()
        except BaseException as error:  # noqa: BLE001 - re-raised on the test's thread
            failed.append(error)

    closer = threading.Thread(target=close, name="notipipe-test-close", daemon=True)
    closer.start()
    closer.join(CLOSE_AT_TEARDOWN)
    if closer.is_alive():
        pytest.fail(f"{old!r}.close() did not return within {CLOSE_AT_TEARDOWN:.0f} s (a server gone?)")
    if failed:
        raise failed[0]


def outcome(make: Callable[..., object], **fields: object) -> tuple[str, str]:
    """What ``make(**fields)`` did: ``("ok", "")``, or the ``TypeError``/``ValueError`` it raised as
    ``(type name, message)``; for comparing the answers of the twins and factories to one call."""
    try:
        make(**fields)
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)
    return "ok", ""


@pytest.fixture
def db(impl: Impl) -> Iterator[Any]:
    """A fresh in-memory DatabaseConnection of this twin, closed again after the test."""
    drop(impl.DatabaseConnection)
    yield impl.DatabaseConnection(":memory:")
    drop(impl.DatabaseConnection)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The DSN of the session's PostgreSQL server: ``$NOTIPIPE_PG_DSN``, else a throwaway cluster."""
    given = os.environ.get("NOTIPIPE_PG_DSN")
    if given:
        yield given
        return
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster.dsn
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN to a new, empty database of its own on the session's server, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"notipipe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(pg_server, dbname=name)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_dsn: str) -> str:
    """The test's database (``pg_dsn``) as the ``postgresql://`` URL DatabaseConnection takes."""
    from tests._pg_util import as_url

    return as_url(pg_dsn)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private, running PostgreSQL server that the test may kill and restart."""
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """The session's NATS server with JetStream (a real ``nats-server``, see ``tests/_nats_server``)."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """``nats://127.0.0.1:PORT/STREAM``: a stream of the test's own on the session's server."""
    return f"{nats_server.url}/T{uuid.uuid4().hex[:12]}"


@pytest.fixture
def nats_own_server() -> Iterator[NatsServer]:
    """A private, running NATS server that the test may kill and restart."""
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_notipipe_db_from_the_shell() -> Iterator[None]:
    # The tests expect the in-memory default whatever NOTIPIPE_DB the caller's shell has. Cleared
    # once for the session by hand rather than per test with ``monkeypatch``: pytest-run-parallel
    # runs no test that requests ``monkeypatch`` in parallel, and an autouse request would keep
    # every test out of the parallel leg.
    saved = os.environ.pop("NOTIPIPE_DB", None)
    yield
    if saved is not None:
        os.environ["NOTIPIPE_DB"] = saved


@pytest.fixture(autouse=True)
def _fresh_singletons() -> Iterator[None]:
    # Every test starts and ends with no DatabaseConnection instance of either twin. Fixtures run
    # once per test on the main thread, before and after pytest-run-parallel's worker threads, so
    # this reset never races the copies of a test; the copies of a test that share the instance
    # are kept in one thread instead (see _THREAD_UNSAFE_FIXTURES).
    for name in _available():
        drop(_build(name).DatabaseConnection)
    yield
    for name in _available():
        drop(_build(name).DatabaseConnection)


# The free-threaded leg of the test command runs each test in several threads at once
# (pytest-run-parallel). A test stays in one thread when its copies would share process-wide
# state: the plugin itself spots ``monkeypatch``, ``capsys``, ``gc.collect`` and the like; the
# tests mark what it cannot see with ``@pytest.mark.thread_unsafe(reason=...)``; and these
# fixtures mark every test that requests them.
_THREAD_UNSAFE_FIXTURES = {
    # The same DatabaseConnection for every copy: they would subscribe to, save into and close
    # one instance and count each other's messages.
    "db": "shares the DatabaseConnection singleton",
    # One capture handler on the root logger: each copy would count the others' records, and the
    # logger levels the copies set and restore in turn could leave the logger changed.
    "caplog": "captures the process-wide logging",
    # test_observer_failures' own capture: a handler on the shared "notipipe" logger, the same.
    "records": "captures the process-wide notipipe logger",
    # One PostgreSQL database for every copy: they would read each other's alerts.
    "pg_dsn": "shares one PostgreSQL database",
    "pg_cluster": "kills and restarts a PostgreSQL server",
    "nats_url": "shares one JetStream stream",
    "nats_own_server": "kills and restarts a NATS server",
}


_PG_FIXTURES = {"pg_server", "pg_dsn", "pg_cluster"}
_NATS_FIXTURES = {"nats_server", "nats_url", "nats_own_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if sum(item.get_closest_marker(name) is not None for name in LEG_MARKERS) != 1
    ]
    if unmarked:
        raise pytest.UsageError(
            f"every test takes exactly one of the markers {', '.join(LEG_MARKERS)}, which say where it"
            " runs (CONTRIBUTING.md, 'Which marker a new test takes'); not so: " + ", ".join(unmarked[:20])
        )
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgresql)
        if _NATS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nats)
        for fixture in sorted(_THREAD_UNSAFE_FIXTURES.keys() & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.thread_unsafe(reason=_THREAD_UNSAFE_FIXTURES[fixture]))
