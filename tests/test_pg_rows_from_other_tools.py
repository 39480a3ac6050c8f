"""Rows another tool wrote into ``notipipe_messages`` on a real PostgreSQL server (issue 20, item 6):
every read (``last``, ``after``, ``follow``) reports each such row once and skips it, as a durable
subscriber already did, and reads the alerts around it as before."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from notipipe import StoredAlert
from tests._pg_rows import Seen
from tests._pg_util import query
from tests._processes import wait_until
from tests.conftest import Impl

pytestmark = pytest.mark.system

#: Rows no notipipe writes: out of range, an unknown kind (read as a StoredAlert), and NULLs where
#: a DBA dropped NOT NULL.
_FOREIGN = (
    ("sms", 1.0, 9, "+15551234567", "", "priority 9"),
    ("fax", 1.0, 3, "+15551234567", "", "not a kind"),
    ("email", 1.0, 3, "ops@example.com", None, "subject NULL"),
    ("sms", None, 3, "+15551234567", "", "created_at NULL"),
)


def _insert_foreign_rows(dsn: str) -> list[int]:
    query(dsn, "ALTER TABLE notipipe_messages ALTER COLUMN subject DROP NOT NULL")
    query(dsn, "ALTER TABLE notipipe_messages ALTER COLUMN created_at DROP NOT NULL")
    return [
        query(
            dsn,
            "INSERT INTO notipipe_messages (kind, created_at, priority, address, subject, body,"
            " origin_host, origin_pid) VALUES (%s, %s, %s, %s, %s, %s, 'other-tool', 1) RETURNING id",
            row,
        )[0][0]
        for row in _FOREIGN
    ]


def _follow_all(db: Any, expected: int) -> list[Any]:
    seen: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    pages = db.follow(0, poll=0.05, stop=stop)

    def run() -> None:
        try:
            for page in pages:
                assert page, "follow() yielded an empty page"
                seen.extend(page)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            errors.append(error)

    thread = threading.Thread(target=run, name="follower")
    thread.start()
    try:
        assert wait_until(lambda: len(seen) >= expected or bool(errors), 30), seen
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    if errors:
        raise errors[0]
    return seen


def test_rows_another_tool_wrote_are_reported_once_and_skipped_by_every_read(
    impl: Impl, pg_dsn: str, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = impl.DatabaseConnection(pg_url)
    db.save_many([impl.SMSMessage(body=f"before {i}") for i in range(3)], durable=True)
    bad = _insert_foreign_rows(pg_dsn)
    db.save_many([impl.SMSMessage(body=f"after {i}") for i in range(3)], durable=True)
    # The row of a kind this process has not registered is no error: a StoredAlert (issue 22).
    raw = {"address": "+15551234567", "subject": "", "body": "not a kind"}
    fax = StoredAlert("fax", raw, created_at=1.0, id=bad.pop(1))
    good = ["before 0", "before 1", "before 2", fax, "after 0", "after 1", "after 2"]
    with caplog.at_level(logging.ERROR, "notipipe"):
        assert [_body(m) for m in db.last(4)] == good[-4:]
        assert [_body(m) for m in db.last(100)] == good
        assert [_body(m) for m in db.after(0)] == good
        assert [_body(m) for m in db.after(0, 4)] == good[:4]  # a full page, the bad rows read past
        assert [_body(m) for m in _follow_all(db, 7)] == good
    reports: dict[int, str] = {}
    for record in caplog.records:
        text = record.getMessage()
        assert text.startswith(f"notipipe: {db.path}: skipped row id "), text
        row_id = int(text.split("skipped row id ")[1].split(":")[0])
        assert row_id not in reports, f"row {row_id} reported twice"
        reports[row_id] = text
    assert sorted(reports) == bad
    assert "(SMSMessage.priority: 9 is outside 1..5)" in reports[bad[0]]
    assert "EmailMessage.subject: expected str, got NoneType None" in reports[bad[1]]
    assert "(created_at: expected float, got NoneType None)" in reports[bad[2]]


def _body(message: Any) -> object:
    """An SMS's body; a StoredAlert as it is."""
    return message if isinstance(message, StoredAlert) else message.body


@pytest.mark.parametrize("created_at", ["NaN", "Infinity", "1e300"])
def test_follow_since_starts_after_a_row_of_another_tool_with_no_time(
    impl: Impl, pg_dsn: str, pg_url: str, created_at: str
) -> None:
    """A row another tool stored with a ``created_at`` that is no time (PostgreSQL's NaN and
    Infinity sort after every number) is no alert of a later time: ``follow(since=T)`` starts at
    the first alert created at ``T`` or later, not at that row (which would yield every alert
    stored since it again)."""
    db = impl.DatabaseConnection(pg_url)
    db.save_many([impl.SMSMessage(body=f"old {i}", created_at=1_000.0 + i) for i in range(3)], durable=True)
    query(
        pg_dsn,
        "INSERT INTO notipipe_messages (kind, created_at, priority, address, subject, body, origin_host,"
        " origin_pid) VALUES ('sms', %s::float8, 3, '+15551234567', '', 'no time', 'other-tool', 1)",
        (created_at,),
    )
    db.save_many([impl.SMSMessage(body=f"older {i}", created_at=2_000.0 + i) for i in range(3)], durable=True)
    db.save_many([impl.SMSMessage(body=f"new {i}", created_at=5_000.0 + i) for i in range(2)], durable=True)
    stop = threading.Event()
    pages = db.follow(since=5_000.0, poll=0.05, stop=stop)
    first = next(pages)
    stop.set()
    assert [m.body for m in first] == ["new 0", "new 1"]


def test_a_durable_subscriber_reports_each_row_another_tool_wrote_in_its_place_and_reads_the_rest(
    impl: Impl, pg_dsn: str, pg_url: str
) -> None:
    # A durable subscriber builds a page's e-mails and SMSes straight from its rows: each row
    # those calls cannot make an alert of (a NULL subject, a NULL created_at, which the classes
    # would take as "now", a priority out of range) is reported with what the other reads say.
    db = impl.DatabaseConnection(pg_url)
    reported: list[tuple[Any, Any, Exception]] = []
    db.error_handler = lambda observer, message, error: reported.append((observer, message, error))
    seen = Seen()
    assert db.subscribe(seen, durable_name="other-tools")
    try:
        db.save_many([impl.SMSMessage(body=f"before {i}") for i in range(3)], durable=True)
        bad = _insert_foreign_rows(pg_dsn)
        db.save_many([impl.SMSMessage(body=f"after {i}") for i in range(3)], durable=True)
        assert wait_until(lambda: len(seen.messages) >= 7, 30), seen.messages
    finally:
        assert db.unsubscribe(seen)
    raw = {"address": "+15551234567", "subject": "", "body": "not a kind"}
    fax = StoredAlert("fax", raw, created_at=1.0, id=bad.pop(1))
    assert [_body(m) for m in seen.messages] == [
        "before 0",
        "before 1",
        "before 2",
        fax,
        "after 0",
        "after 1",
        "after 2",
    ]
    assert [(o, m[0]) for o, m, _ in reported] == [(seen, i) for i in bad]
    errors = [str(e) for _, _, e in reported]
    assert "SMSMessage.priority: 9 is outside 1..5" in errors[0]
    assert "EmailMessage.subject: expected str, got NoneType None" in errors[1]
    assert "created_at: expected float, got NoneType None" in errors[2]
