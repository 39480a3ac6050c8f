"""The backend registry: one object per store decides, a URL of an unknown scheme is refused with
the known ones, no message shows a password, and a new backend is one registry line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import notipipe
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
        self, target: str, store: Any, after_id: int, *, page: int, poll: float, stop: threading.Event
    ) -> Iterator[list[tuple[object, ...]]]:
        self.calls.append("follow")
        return self.sqlite.follow_rows(self._file(target), store, after_id, page=page, poll=poll, stop=stop)  # type: ignore[no-any-return]

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
