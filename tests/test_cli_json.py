"""``--json`` on ``stats``, ``tail``, ``subscriptions`` and ``info``: every object a command
prints has exactly the keys docs/json.md lists for it, with the types listed there (the two
cannot drift apart), as valid ASCII JSON Lines; errors stay one line on stderr with the usual
statuses. And ``tail`` shows an alert of any kind (``StoredAlert``) by its own fields."""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import notipipe
from notipipe import StoredAlert
from notipipe.cli._json import alert_object
from notipipe.cli.read import _print_alerts, alert_json_line, alert_line
from tests._processes import follow_tail
from tests.conftest import Impl
from tests.test_cli import _env, _one_line_error, run_cli

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="only waits on child processes: copies add load, not coverage"),
]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "json.md"
#: A section of docs/json.md that documents one object: "## `stats`", "### `stats.origins[]`",
#: "### `tail.fields` for kind `email`"; then its table's rows: "| `key` | type | meaning |".
_HEADING = re.compile(r"^#{2,3} `(?P<object>[a-z_.\[\]]+)`(?: for kind `(?P<kind>\w+)`)?\s*$")
_ROW = re.compile(r"^\| `(?P<key>\w+)` \| (?P<type>[a-z ]+?) \| .*\|$")
_TYPES: dict[str, Any] = {
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
}
#: Every object the docs must document (a test that found none would pass on anything).
_OBJECTS = {
    "stats",
    "stats.origins[]",
    "tail",
    "tail.fields[email]",
    "tail.fields[sms]",
    "subscriptions",
    "subscriptions.subscriptions[]",
    "prune",
    "info",
}


def documented(text: str | None = None) -> dict[str, dict[str, str]]:
    """Each object docs/json.md documents (``tail.fields[email]`` for a kind's fields): its keys,
    in order, and their types."""
    objects: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (DOCS.read_text(encoding="utf-8") if text is None else text).splitlines():
        if heading := _HEADING.match(line):
            name = heading["object"] + (f"[{heading['kind']}]" if heading["kind"] else "")
            current = objects.setdefault(name, {})
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := _ROW.match(line)):
            current[row["key"]] = row["type"]
    return objects


DOCUMENTED = documented()


def _conforms(value: object, spec: str) -> bool:
    alternatives = spec.split(" or ")
    return ("null" in alternatives and value is None) or any(
        _TYPES[t](value) for t in alternatives if t != "null"
    )


def check(obj: Any, name: str) -> None:
    """``obj`` is the object docs/json.md documents as ``name``: the same keys, in the same
    order, each value of its documented type; its nested objects too."""
    fields = DOCUMENTED[name]
    assert list(obj) == list(fields), f"{name}: printed {list(obj)}, documented {list(fields)}"
    for key, spec in fields.items():
        assert _conforms(obj[key], spec), f"{name}.{key}: {obj[key]!r} is not {spec}"
        if spec.startswith("array") and f"{name}.{key}[]" in DOCUMENTED:
            for item in obj[key]:
                check(item, f"{name}.{key}[]")
    if name == "tail" and f"tail.fields[{obj['kind']}]" in DOCUMENTED:
        check(obj["fields"], f"tail.fields[{obj['kind']}]")


def _lines(out: str) -> list[Any]:
    """stdout as JSON Lines: ASCII only, every line one JSON object."""
    assert out.isascii(), out
    assert out.endswith("\n")
    return [json.loads(line) for line in out.splitlines()]


def _utc(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _rows(db: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT id, kind, created_at, priority, address, subject, body FROM messages ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def _execute(db: str, sql: str, *values: object) -> None:
    """A statement run as another tool (or another version of notipipe) would run it."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(sql, values)
    finally:
        conn.close()


def _insert(db: str, kind: str, row: tuple[str, str, str], created_at: float) -> None:
    """A row (address, subject, body) written as another tool (or another version of notipipe)
    would write it."""
    _execute(
        db,
        "INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES (?, ?, 3, ?, ?, ?)",
        kind,
        created_at,
        *row,
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file of 60 alerts, e-mail and SMS."""
    db = str(tmp_path_factory.mktemp("json") / "a.db")
    made = run_cli("run", "--alerts", "60", "--mix", "email=1,sms=1", "--progress", "none", "--db", db)
    assert made.returncode == 0, made.stderr
    return db


# -- the documentation is the schema --------------------------------------------------------------


def test_the_docs_document_each_command_s_objects_with_known_types() -> None:
    assert set(DOCUMENTED) == _OBJECTS
    for name, fields in DOCUMENTED.items():
        assert fields, f"{name}: no field documented"
        for key, spec in fields.items():
            assert set(spec.split(" or ")) <= {*_TYPES, "null"}, f"{name}.{key}: unknown type {spec!r}"


def test_a_renamed_key_is_caught_by_the_comparison_with_the_docs() -> None:
    # What the tests below rely on: a key the docs name otherwise (or a missing table) fails.
    renamed = DOCS.read_text(encoding="utf-8").replace("| `total` |", "| `count` |")
    assert documented(renamed)["stats"] != DOCUMENTED["stats"]
    with pytest.raises(AssertionError, match="stats: printed"):
        check({"count" if k == "total" else k: 0 for k in DOCUMENTED["stats"]}, "stats")
    with pytest.raises(AssertionError, match="is not integer"):
        check({**dict.fromkeys(DOCUMENTED["stats.origins[]"], "x")}, "stats.origins[]")


# -- each command ---------------------------------------------------------------------------------


def test_stats_json_is_the_documented_object(stored: str) -> None:
    result = run_cli("stats", "--db", stored, "--json")
    assert (result.returncode, result.stderr) == (0, "")
    [st] = _lines(result.stdout)
    check(st, "stats")
    rows = _rows(stored)
    assert st["database"] == stored
    assert st["total"] == len(rows) == 60
    assert st["by_kind"] == {kind: sum(1 for r in rows if r[1] == kind) for kind in ("email", "sms")}
    assert st["origins"] == []  # SQLite records none
    assert (st["first_at"], st["last_at"]) == (min(r[2] for r in rows), max(r[2] for r in rows))
    assert (st["first_at_utc"], st["last_at_utc"]) == (_utc(st["first_at"]), _utc(st["last_at"]))
    assert st["size_bytes"] >= os.path.getsize(stored)  # the file, and its write-ahead log if any


def test_stats_json_of_an_empty_database_gives_null_times(tmp_path: Path) -> None:
    db = str(tmp_path / "empty.db")
    assert run_cli("run", "--alerts", "1", "--progress", "none", "--db", db).returncode == 0
    _execute(db, "DELETE FROM messages")
    [st] = _lines(run_cli("stats", "--db", db, "--json").stdout)
    check(st, "stats")
    assert (st["total"], st["by_kind"], st["first_at"], st["first_at_utc"]) == (0, {}, None, None)


def test_stats_counts_any_kind_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "kinds.db")
    assert (
        run_cli("run", "--alerts", "4", "--mix", "email=1", "--progress", "none", "--db", db).returncode == 0
    )
    _insert(db, "push", ("", "", '{"v": 1, "fields": {"device": "pixel-7"}}'), 1_796_000_000.0)
    [st] = _lines(run_cli("stats", "--db", db, "--json").stdout)
    check(st, "stats")
    assert st["by_kind"] == {"email": 4, "push": 1}
    text = run_cli("stats", "--db", db)
    assert "  push: 1\n" in text.stdout, text.stdout


def test_tail_json_gives_each_alert_with_its_fields(stored: str) -> None:
    result = run_cli("tail", "--db", stored, "-n", "60", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    alerts = _lines(result.stdout)
    rows = _rows(stored)
    assert {a["kind"] for a in alerts} == {"email", "sms"}
    for alert, (id_, kind, created_at, priority, address, subject, body) in zip(alerts, rows, strict=True):
        check(alert, "tail")
        assert (alert["id"], alert["kind"], alert["priority"], alert["created_at"]) == (
            id_,
            kind,
            priority,
            created_at,
        )
        assert alert["created_at_utc"] == _utc(created_at)
        expected = (
            {"recipient": address, "subject": subject, "body": body}
            if kind == "email"
            else {"phone_number": address, "body": body}
        )
        assert alert["fields"] == expected


def test_tail_json_escapes_what_a_terminal_would_run(tmp_path: Path) -> None:
    db = str(tmp_path / "esc.db")
    assert run_cli("run", "--alerts", "1", "--progress", "none", "--db", db).returncode == 0
    subject = "\x1b[31mred\x1b[0m \u00e9\u8b66 \x07"  # an escape sequence, non-ASCII, a bell
    _insert(db, "email", ("ops@example.com", subject, "b"), 1_796_000_000.0)
    result = run_cli("tail", "--db", db, "-n", "1", "--json", env=_env(PYTHONIOENCODING="ascii"))
    assert (result.returncode, result.stderr) == (0, "")
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    [alert] = _lines(result.stdout)
    assert alert["fields"]["subject"] == subject


def test_info_json_is_the_documented_object() -> None:
    result = run_cli("info", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    [info] = _lines(result.stdout)
    check(info, "info")
    assert (info["version"], info["compiled"]) == (notipipe.__version__, notipipe.COMPILED)
    assert info["sqlite_version"] == sqlite3.sqlite_version
    assert info["python_version"] == sys.version.split()[0]
    assert info["gil_enabled"] is getattr(sys, "_is_gil_enabled", lambda: True)()


class _Seen:
    def update(self, message: object) -> None:
        pass


def test_subscriptions_json_is_the_documented_object(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from notipipe.cli import main

    db = notipipe.DatabaseConnection(pg_url)
    assert main(["subscriptions", "--db", pg_url, "--json"]) == 0
    [none] = _lines(capsys.readouterr().out)
    check(none, "subscriptions")
    assert none == {"subscriptions": []}
    held, idle = _Seen(), _Seen()
    assert db.subscribe(held, durable_name="eu-dashboard")
    assert db.subscribe(idle, durable_name="audit")
    assert db.unsubscribe(idle)
    db.save_many([notipipe.SMSMessage("+15550001111", "a"), notipipe.SMSMessage("+15550001111", "b")])
    db.flush()
    assert main(["subscriptions", "--db", pg_url, "--json"]) == 0
    [listed] = _lines(capsys.readouterr().out)
    check(listed, "subscriptions")
    audit, eu = listed["subscriptions"]
    assert (audit["name"], audit["lag"], audit["holder"], audit["active"]) == ("audit", 2, None, False)
    assert (eu["name"], eu["holder"], eu["active"]) == (
        "eu-dashboard",
        f"{os.getpid()}@{os.uname().nodename}",
        True,
    )


# -- errors and a closed output -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "pattern"),
    [
        (["stats", "--db", "nope.db", "--json"], 1, r"^notipipe stats: error: nope\.db: no such database"),
        (["tail", "--db", "nope.db", "--json"], 1, r"^notipipe tail: error: nope\.db: no such database"),
        (["subscriptions", "--db", "a.db", "--json"], 1, r"^notipipe subscriptions: error: durable"),
        (["tail", "-n", "-1", "--json"], 2, r"argument -n: -1 is negative"),
        (["info", "--json", "extra"], 2, r"unrecognized arguments: extra"),
    ],
)
def test_json_errors_stay_one_line_on_stderr(
    args: list[str], status: int, pattern: str, tmp_path: Path
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    _one_line_error(result, status, pattern)
    assert result.stdout == ""


def test_tail_json_into_head_ends_quietly(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    assert run_cli("run", "--alerts", "20000", "--progress", "none", "--db", db).returncode == 0
    with subprocess.Popen(
        [sys.executable, "-m", "notipipe", "tail", "--db", db, "-n", "20000", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert json.loads(first)["id"] == 1
    assert (proc.returncode, err) == (141, b"")


# -- tail --follow --json -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="POSIX signals")
def test_tail_follow_json_gives_one_object_per_alert_as_they_are_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "live.db")
    assert run_cli("run", "--alerts", "5", "--progress", "none", "--db", db).returncode == 0
    with follow_tail("tail", "-f", "-n", "2", "--json", "--db", db, env=_env()) as tail:
        alerts: list[Any] = []
        try:
            for _ in range(2):
                alerts.append(json.loads(tail.line()))
            writer = run_cli(
                "run", "--alerts", "2000", "--batch-size", "500", "--progress", "none", "--db", db
            )
            assert writer.returncode == 0, writer.stderr
            while alerts[-1]["id"] < 2005:
                alerts.append(json.loads(tail.line()))
        finally:
            tail.stop(signal.SIGINT)
        assert tail.next() is None
        assert [a["id"] for a in alerts] == list(range(4, 2006))
        for alert in alerts:
            check(alert, "tail")
        assert (tail.proc.returncode, tail.stderr()) == (130, "")


class _Flushes(io.StringIO):
    """A stdout that notes what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.at_flush: list[str] = []

    def flush(self) -> None:
        self.at_flush.append(self.getvalue())


def _push(id_: int = 17, **fields: object) -> StoredAlert:
    return StoredAlert("push", fields, priority=3, created_at=1_796_635_801.25, id=id_)


def test_tail_follow_json_passes_each_line_on_as_it_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A script reading `tail -f --json` line by line gets each alert at once, not at a page's end.
    out = _Flushes()
    monkeypatch.setattr(sys, "stdout", out)
    _print_alerts([_push(1), _push(2), _push(3)], alert_json_line, per_line=True)
    assert [text.count("\n") for text in out.at_flush] == [1, 2, 3]
    assert all(text.endswith("\n") for text in out.at_flush)


# -- any kind -------------------------------------------------------------------------------------


@pytest.fixture
def local_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The text's times (local) in UTC, whatever the machine's zone."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_tail_shows_any_kind_by_its_own_fields(local_utc: None) -> None:
    push = _push(device="pixel-7", title="disk full")
    assert alert_line(push) == "#17 2026-12-07 09:30:01.250 push  p3 device='pixel-7' title='disk full'"
    long = StoredAlert("webhook", {"url": "https://x.example", "attempt": 2}, priority=5, id=3)
    assert alert_line(long) == "#3 1970-01-01 00:00:00.000 webhook p5 url='https://x.example' attempt=2"
    # A stored name is never printed raw: one alert stays one line, with no escape sequence.
    odd = StoredAlert("pa\nge", {"\x1b[2J": "x"}, id=4)
    assert alert_line(odd) == "#4 1970-01-01 00:00:00.000 'pa\\nge' p3 '\\x1b[2J'='x'"


def test_tail_shows_the_built_in_kinds_as_always(impl: Impl, local_utc: None) -> None:
    at = 1_796_635_801.25
    email = impl.EmailMessage("ops@example.com", "disk full", "b", priority=4, created_at=at, id=1)
    sms = impl.SMSMessage("+15550001111", "cpu hot", priority=2, created_at=at, id=2)
    assert alert_line(email) == "#1 2026-12-07 09:30:01.250 email p4 to=ops@example.com subject='disk full'"
    assert alert_line(sms) == "#2 2026-12-07 09:30:01.250 sms   p2 to=+15550001111 body='cpu hot'"


def test_tail_json_shows_any_kind_as_the_documented_object() -> None:
    push = _push(device="pixel-7", title="disk full", badge=2, extra=None, ratio=float("nan"))
    obj = json.loads(alert_json_line(push))
    check(obj, "tail")
    assert obj == {
        "id": 17,
        "kind": "push",
        "priority": 3,
        "created_at": 1_796_635_801.25,
        "created_at_utc": "2026-12-07T09:30:01.250Z",
        "fields": {"device": "pixel-7", "title": "disk full", "badge": 2, "extra": None, "ratio": None},
    }
    assert alert_object(push)["fields"] == obj["fields"]


def test_tail_shows_a_registered_kind_that_another_process_stored(impl: Impl, tmp_path: Path) -> None:
    # The command has not registered the kind: it reads it as a StoredAlert, by its own fields.
    from dataclasses import dataclass

    from tests.conftest import drop

    @dataclass(frozen=True, slots=True)
    class CliPush(notipipe.BaseMessage):
        device: str
        title: str = ""

    class Factory(notipipe.MessageFactory):
        pass

    Factory.register("cli_push", replace=True)(CliPush)  # once per twin in this process
    path = str(tmp_path / "kinds.db")
    db = impl.DatabaseConnection(path)
    try:
        db.save_many([CliPush("pixel-7", "disk full", priority=4), impl.SMSMessage("+15551234567", "x")])
        db.flush()
    finally:
        drop(impl.DatabaseConnection)
    text = run_cli("tail", "--db", path)
    assert (text.returncode, text.stderr) == (0, "")
    assert "cli_push p4 device='pixel-7' title='disk full'" in text.stdout.splitlines()[0]
    assert "sms   p3 to=+15551234567 body='x'" in text.stdout.splitlines()[1]
    result = run_cli("tail", "--db", path, "--json")
    assert (result.returncode, result.stderr) == (0, "")
    push, sms = _lines(result.stdout)
    check(push, "tail")
    check(sms, "tail")
    assert (push["id"], push["kind"], push["priority"]) == (1, "cli_push", 4)
    assert push["fields"] == {"device": "pixel-7", "title": "disk full"}
