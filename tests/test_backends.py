"""The backend registry: one object per store decides, a URL of an unknown scheme is refused with
the known ones, no message shows a password, and a new backend is one registry line."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import notipipe
from notipipe import describe_target
from tests.conftest import Impl, drop

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="each test opens and closes the DatabaseConnection singleton"),
]

SECRET = "s3cretpw"
UNKNOWN = f"mysql://u:{SECRET}@host/db"
UNKNOWN_SHOWN = "mysql://u:***@host/db"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "NOTIPIPE_DB"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "notipipe", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def _assert_unknown_scheme_refusal(message: str, scheme: str = "mysql", shown: str = UNKNOWN_SHOWN) -> None:
    assert SECRET not in message
    assert message.startswith(f"{shown}: no backend for the scheme '{scheme}'; known: "), message
    for known in ("postgresql://", "postgres://", "or a SQLite file path"):
        assert known in message, message


def test_a_url_of_an_unknown_scheme_is_refused_with_the_known_schemes(
    impl: Impl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # taken as a relative file path, it would name a directory here
    with pytest.raises(notipipe.ConfigurationError) as refused:
        impl.DatabaseConnection(UNKNOWN)
    _assert_unknown_scheme_refusal(str(refused.value))
    with pytest.raises(notipipe.ConfigurationError) as refused:
        impl.DatabaseConnection("Redis+TLS://cache:6379/0")
    _assert_unknown_scheme_refusal(str(refused.value), "redis+tls", "Redis+TLS://cache:6379/0")
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_an_unknown_scheme_in_notipipe_db_is_refused(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIPIPE_DB", UNKNOWN)
    with pytest.raises(notipipe.ConfigurationError) as refused:
        impl.DatabaseConnection().count_by_kind()
    _assert_unknown_scheme_refusal(str(refused.value))


@pytest.mark.parametrize(
    "command", [["stats"], ["tail"], ["run", "--alerts", "10"], ["serve", "--port", "0"]]
)
def test_the_commands_refuse_an_unknown_scheme_in_one_line_without_the_password(
    command: list[str],
) -> None:
    for done in (_cli(*command, "--db", UNKNOWN), _cli(*command, NOTIPIPE_DB=UNKNOWN)):
        assert (done.returncode, done.stdout) == (1, ""), done
        prefix = f"notipipe {command[0]}: error: "
        assert done.stderr.startswith(prefix), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        _assert_unknown_scheme_refusal(done.stderr.removeprefix(prefix))


def test_no_message_shows_the_password_of_a_postgresql_url(impl: Impl) -> None:
    url = f"postgresql://alice:{SECRET}@127.0.0.1:1/alerts?password={SECRET}"
    target = notipipe.describe_target(url)
    assert SECRET not in repr(target)
    assert SECRET not in str(target)
    assert target.shown.startswith("postgresql://alice:***@127.0.0.1:1/alerts?password=")
    db = impl.DatabaseConnection(url)
    assert SECRET not in db.path
    assert SECRET not in repr(db.target)
    with pytest.raises(ValueError, match="does not read") as refused:
        impl.DatabaseConnection(url, synchronous="FULL")
    assert SECRET not in str(refused.value)
    with pytest.raises(ValueError, match="durable_name must be") as refused:
        db.subscribe(_Seen(), durable_name="")  # checked before any connection
    assert SECRET not in str(refused.value)
    done = _cli("stats", "--db", url)
    assert done.returncode == 1
    assert SECRET not in done.stderr
    assert "alice:***@" in done.stderr


def test_options_a_backend_does_not_read_must_keep_their_defaults(impl: Impl) -> None:
    for options in ({"synchronous": "FULL"}, {"wal_limit": 2**21}):
        with pytest.raises(ValueError, match="is a setting the postgresql backend does not read") as refused:
            impl.DatabaseConnection("postgresql://u:pw@localhost/x", **options)
        assert "must keep their defaults" in str(refused.value)
        assert "pw@" not in str(refused.value)


def test_describe_target_answers_what_the_cli_asks(tmp_path: Path) -> None:
    file = notipipe.describe_target(tmp_path / "a.db")
    assert (file.backend, file.ids_follow_commits) == ("sqlite", True)
    assert file.shown == str(tmp_path / "a.db")
    assert not file.exists()
    assert "synchronous" in file.options
    memory = notipipe.describe_target(":memory:")
    assert memory.backend == "sqlite"
    url = notipipe.describe_target("postgres://x@h/db")
    assert (url.backend, url.ids_follow_commits) == ("postgresql", False)
    assert url.follow_poll > file.follow_poll
    assert "synchronous" not in url.options
    assert "postgresql://" in notipipe.known_targets()
    durable = notipipe.known_targets(durable=True)
    assert "postgresql://" in durable
    assert "nats://" in durable
    assert "SQLite" not in durable
    with pytest.raises(notipipe.ConfigurationError, match="no backend for the scheme 'nope'"):
        notipipe.describe_target("nope://x")


def test_a_sqlite_database_keeps_no_durable_names(db: Any) -> None:
    with pytest.raises(
        notipipe.ConfigurationError, match="durable subscribers need a backend that keeps durable"
    ):
        db.subscribe(_Seen(), durable_name="eu")
    with pytest.raises(
        notipipe.ConfigurationError, match="durable subscribers need a backend that keeps durable"
    ):
        db.subscriptions()
    with pytest.raises(
        notipipe.ConfigurationError, match="durable subscribers need a backend that keeps durable"
    ):
        notipipe.describe_target(":memory:").subscriptions()


def test_importing_notipipe_imports_no_database_driver() -> None:
    program = (
        "import sys, notipipe, notipipe.cli, notipipe._storage\n"
        "notipipe.describe_target('postgresql://x@h/db')\n"
        "print(sorted({name.partition('.')[0] for name in sys.modules} & {'psycopg', 'nats'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


class _Seen:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def update(self, message: Any) -> None:
        self.got.append(message)


class _MemoBackend:
    """A backend of the test only: a ``memo://`` target is a SQLite file of the same name, written
    and followed by the SQLite backend; it keeps no durable names."""

    name = "memo"
    schemes = ("memo",)
    follow_poll = 0.01
    ids_follow_commits = True
    keeps_durable_names = False
    options_hint = ""

    def __init__(self, base: Path, sqlite: Any) -> None:
        self.base, self.sqlite = base, sqlite
        self.options = sqlite.options
        self.calls: list[str] = []

    def _file(self, target: str) -> str:
        return str(self.base / target.removeprefix("memo://"))

    def claims(self, target: str) -> bool:
        return target.startswith("memo://")

    def normalize(self, target: str) -> str:
        return target

    def shown(self, target: str) -> str:
        return target

    def check(self, target: str) -> None:
        self.calls.append("check")

    def exists(self, target: str) -> bool:
        return bool(self.sqlite.exists(self._file(target)))

    def open(self, target: str, options: Any, to_rows: Callable[..., Any], on_commit: Any) -> Any:
        self.calls.append("open")
        return self.sqlite.open(self._file(target), options, to_rows, on_commit)

    def follow_rows(
        self, target: str, open_store: Any, after_id: int, *, page: int, poll: float, stop: threading.Event
    ) -> Iterator[list[tuple[object, ...]]]:
        self.calls.append("follow")
        rows: Iterator[list[tuple[object, ...]]] = self.sqlite.follow_rows(
            self._file(target), open_store, after_id, page=page, poll=poll, stop=stop
        )
        return rows

    def durable_subscription(self, target: str, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.sqlite.durable_subscription(target, name, *args, **kwargs)

    def subscriptions(self, target: str) -> list[Any]:
        return self.sqlite.subscriptions(target)  # type: ignore[no-any-return]


def test_a_backend_is_one_registry_line(impl: Impl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from notipipe import _storage
    from notipipe._storage.sqlite.backend import BACKEND as SQLITE

    memo = _MemoBackend(tmp_path, SQLITE)
    monkeypatch.setattr(_storage, "BACKENDS", (memo, *_storage.BACKENDS))
    assert notipipe.describe_target("memo://x").backend == "memo"
    assert "memo://" in notipipe.known_targets()
    db = impl.DatabaseConnection("memo://alerts.db")
    try:
        assert db.target.backend == "memo"
        db.save(impl.SMSMessage("+15551234567", "one"), durable=True)
        assert [m.body for m in db.last(5)] == ["one"]
        stop = threading.Event()
        pages = db.follow(0, stop=stop)
        assert [m.body for m in next(pages)] == ["one"]
        stop.set()
        pages.close()
        assert memo.calls == ["check", "open", "follow"]
        assert (tmp_path / "alerts.db").exists()
    finally:
        drop(impl.DatabaseConnection)


# -- the review of the registry (issue 21): each test below failed before its fix ---------------


def _with_password(url: str, scheme: str) -> str:
    """``url`` (the fixture's, ``postgresql://user@/db?host=...``) under ``scheme``, with ``SECRET``
    as its password (the test cluster trusts local connections: any password is accepted)."""
    rest = url.split("://", 1)[1]
    user, at, after = rest.partition("@")
    assert at, url
    return f"{scheme}://{user}:{SECRET}@{after}"


def _formatted(error: BaseException) -> str:
    """``error`` as a traceback shows it, with every exception chained to it."""
    return "".join(traceback.format_exception(error))


def test_an_upper_case_scheme_reaches_libpq_in_lower_case_and_no_message_shows_the_password(
    impl: Impl, pg_url: str
) -> None:
    url = _with_password(pg_url, "PostgreSQL")
    assert describe_target(url).backend == "postgresql"
    db = impl.DatabaseConnection(url)
    try:
        db.save(impl.SMSMessage("+15551234567", "upper"), durable=True)
        assert db.stats().total == 1
        assert SECRET not in db.path
        assert db.path.startswith("postgresql://")
    finally:
        drop(impl.DatabaseConnection)
    done = _cli("stats", "--db", url)
    assert (done.returncode, SECRET in done.stdout + done.stderr) == (0, False), done


def test_a_driver_message_repeating_the_url_is_shown_without_the_password(pg_url: str) -> None:
    # The backstop behind normalize(): a store given the upper-case URL itself (libpq takes it for
    # key=value text and repeats it, password and all, in its message).
    from notipipe._storage.postgresql.store import PgMessageStore

    store = PgMessageStore(_with_password(pg_url, "PostgreSQL"), lambda batch: [])
    try:
        with pytest.raises(notipipe.StorageError) as refused:
            store.count_by_kind()
        assert "invalid connection option" in str(refused.value)
        assert SECRET not in _formatted(refused.value)
        with pytest.raises(notipipe.StorageError) as refused:
            store.put(object())
        assert SECRET not in _formatted(refused.value)
    finally:
        store.close()


def test_an_explicit_path_is_taken_whatever_notipipe_db_holds(
    impl: Impl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIPIPE_DB", UNKNOWN)
    db = impl.DatabaseConnection(tmp_path / "explicit.db")
    try:
        db.save(impl.SMSMessage("+15551234567", "kept"), durable=True)
        assert [m.body for m in db.last(5)] == ["kept"]
    finally:
        drop(impl.DatabaseConnection)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://u:p@[bad/db", "mysql://u:***@[bad/db"),  # urlsplit raises on it
        ("postgresql://u:p?ss@h/db", "postgresql://u:***@h/db"),  # libpq: up to the first "@"
        ("postgresql://u:p#ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslpassword=key&x=1",
            "postgresql://u@h/db?password=***&sslpassword=***&x=1",
        ),
        ("postgresql://u@h/db?pass%77ord=pw", "postgresql://u@h/db?pass%77ord=***"),
        ("postgres://alice@h/db", "postgres://alice@h/db"),  # a user name is no secret
        ("mysql://u:se/cret@host/db", "mysql://u:***@host/db"),
        ("mysql://u:se?cret@host/db", "mysql://u:***@host/db"),
        ("mysql://u:se#cret@host/db", "mysql://u:***@host/db"),
        ("nats://u:pw@h:4222/S", "nats://u:***@h:4222/S"),
        ("nats://s3cr3ttoken@h:4222/S", "nats://***@h:4222/S"),  # a token
        ("Redis+TLS://cache:6379/0", "Redis+TLS://cache:6379/0"),
    ],
)
def test_redact_never_raises_and_hides_what_a_driver_may_read_as_a_password(url: str, shown: str) -> None:
    from notipipe._storage.urls import redact

    assert redact(url) == shown


def test_a_url_urlsplit_cannot_parse_is_refused_in_one_line() -> None:
    url = f"mysql://u:{SECRET}@[bad/db"
    with pytest.raises(notipipe.ConfigurationError, match=r"^mysql://u:\*\*\*@\[bad/db: no backend"):
        describe_target(url)
    done = _cli("stats", "--db", url)
    assert (done.returncode, done.stderr.count("\n"), SECRET in done.stderr) == (1, 1, False), done


def test_a_storage_target_carries_no_password_in_its_fields_equality_or_pickle() -> None:
    url = f"postgresql://alice:{SECRET}@h/db"
    target = describe_target(url)
    assert SECRET not in repr(dataclasses.asdict(target))
    assert SECRET not in repr(dataclasses.astuple(target))
    assert target == describe_target("postgresql://alice:other@h/db")  # the password is not compared
    assert copy.copy(target) is target
    assert copy.deepcopy(target) is target
    with pytest.raises(TypeError, match=r"cannot be pickled .*alice:\*\*\*@h/db") as refused:
        pickle.dumps(target)
    assert SECRET not in str(refused.value)


def test_the_sqlite_refusal_names_the_backends_that_keep_durable_names(tmp_path: Path) -> None:
    from notipipe import _storage

    keeping = [f"{s}://" for b in _storage.BACKENDS if b.keeps_durable_names for s in b.schemes]
    assert keeping == ["postgresql://", "postgres://", "nats://"]
    path = tmp_path / "s.db"
    with pytest.raises(notipipe.ConfigurationError) as refused:
        describe_target(path).subscriptions()
    assert str(refused.value) == (
        f"durable subscribers need a backend that keeps durable names ({', '.join(keeping)}); {path} is a"
        " SQLite file"
    )


def test_options_a_server_does_not_read_are_refused_with_what_decides_instead(impl: Impl) -> None:
    with pytest.raises(ValueError, match=r"synchronous_commit decides durability\)$"):
        impl.DatabaseConnection("postgresql://u@h/db", synchronous="FULL")


@pytest.mark.parametrize("target", ["sqlite:///x.db", "SQLITE:///x.db", "file:///tmp/x.db"])
def test_a_sqlite_url_is_refused_saying_a_file_is_a_plain_path(target: str) -> None:
    with pytest.raises(
        notipipe.ConfigurationError, match=r"\(a SQLite file is given as a plain path\); known"
    ):
        describe_target(target)


def test_a_one_letter_scheme_is_a_windows_drive_not_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = describe_target("C://x.db")
    assert (target.backend, target.shown) == ("sqlite", str(tmp_path / "C:" / "x.db"))


@pytest.mark.parametrize("command", [["info"], ["--help"], ["tail", "--help"]])
def test_the_cli_starts_in_a_deleted_working_directory(command: list[str], tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    program = (
        "import os, runpy, sys\n"
        f"os.chdir({str(gone)!r}); os.rmdir({str(gone)!r})\n"
        f"sys.argv = ['notipipe', *{command!r}]\n"
        "runpy.run_module('notipipe', run_name='__main__', alter_sys=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (0, ""), done


_FOLLOW_ACROSS_FORK = """
import os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with a writer thread: that is the test
from notipipe import DatabaseConnection, SMSMessage
from tests._processes import wait_forked
db = DatabaseConnection(sys.argv[1])
db.save(SMSMessage("+15551234567", "parent"), durable=True)
pages = db.follow(0, poll=0.01, stop=threading.Event())
print("parent", [m.body for m in next(pages)], flush=True)
pid = os.fork()
if pid == 0:
    try:
        db.save(SMSMessage("+15551234567", "child"), durable=True)
        print("child", [m.body for m in next(pages)], flush=True)
    except BaseException as error:
        print("child raised", type(error).__name__, error, flush=True)
    os._exit(0)
print("child exit", wait_forked(pid, 60), flush=True)
"""


def test_a_follow_iterator_reads_through_the_forked_childs_own_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FOLLOW_ACROSS_FORK, str(tmp_path / "f.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.stdout.splitlines() == ["parent ['parent']", "child ['child']", "child exit 0"], done


# -- follow(since=...): from a time, on every backend ------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "nats"])
def any_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "alerts.db")
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "nats_url"))


def test_follow_since_a_time_starts_at_the_first_alert_of_that_time(impl: Impl, any_target: str) -> None:
    db = impl.DatabaseConnection(any_target)
    try:
        db.save_many([impl.SMSMessage("+15551234567", f"before {i}") for i in range(3)])
        db.flush()
        middle = time.time()
        # The next alerts are made (created_at) and stored (a log's clock) after ``middle``.
        while time.time() <= middle:
            time.sleep(0.001)
        db.save_many([impl.SMSMessage("+15551234567", f"after {i}") for i in range(2)])
        db.flush()
        stop = threading.Event()
        pages = db.follow(since=middle, page=10, poll=0.05, stop=stop)
        assert [m.body for m in next(pages)] == ["after 0", "after 1"]
        pages.close()
    finally:
        drop(impl.DatabaseConnection)


def test_follow_since_refuses_what_is_no_time(impl: Impl, tmp_path: Path) -> None:
    db = impl.DatabaseConnection(str(tmp_path / "alerts.db"))
    try:
        with pytest.raises(ValueError, match="after_id or since, not both"):
            db.follow(5, since=time.time())
        for bad in (-1.0, float("nan"), float("inf"), True, "yesterday"):
            with pytest.raises(ValueError, match="since must be a Unix time in seconds"):
                db.follow(since=bad)
    finally:
        drop(impl.DatabaseConnection)


def test_count_between_counts_the_alerts_stored_between_two_ids(impl: Impl, any_target: str) -> None:
    db = impl.DatabaseConnection(any_target)
    try:
        for n in range(3):  # three batches: on NATS three chunks, ids far apart
            db.save_many([impl.SMSMessage("+15551234567", f"{n}-{i}") for i in range(4)], durable=True)
        ids = [m.id for m in db.last(12)]
        assert db.count_between(0, ids[-1]) == 12
        assert db.count_between(ids[2], ids[9]) == 7
        assert db.count_between(ids[9], ids[2]) == 0
        with pytest.raises(ValueError, match="after_id"):
            db.count_between(-1, 5)
    finally:
        drop(impl.DatabaseConnection)
