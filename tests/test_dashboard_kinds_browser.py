"""The dashboard page shows any kind (issue 22), in headless Chromium: a kind other than e-mail
and SMS is counted in its own neutral bar, and listed with its fields in the "to" and
"subject / body" columns, in a neutral colour.

A kind this server's process has not registered is counted by the store (its row is there), so
the bar is tested end to end. Its alerts reach the list as the follower frames them
(``alerts_frame`` of ``StoredAlert`` objects), handed to the page's own event handler: until
registered kinds are read back (issue 22, item 1), the server's reads skip such a row.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import notipipe
from notipipe import StoredAlert
from tests._dashboard_procs import children
from tests.test_dashboard_browser import _browser_page, _gil_disabled, _ran_with_the_gil

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.thread_unsafe(reason="one browser and child processes per test"),
]

WAIT_MS = 90_000
#: The page's colours, as the browser computes them.
NEUTRAL = "rgb(154, 165, 177)"  # dashboard.js's NEUTRAL, #9aa5b1
EMAIL = "rgb(74, 163, 255)"  # page.html's --email, #4aa3ff
SMS = "rgb(245, 165, 36)"  # page.html's --sms, #f5a524


def _store(db: Path) -> int:
    """Two e-mails and an SMS, with a row of a kind this process has not registered between them
    (counted in the page's totals, which stop at the last alert it can read); the last id."""
    now = time.time()
    with notipipe.DatabaseConnection(db) as store:
        store.save(notipipe.EmailMessage("ops@example.com", "disk", "b", created_at=now), durable=True)
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute(
                "INSERT INTO messages (kind, created_at, priority, address, subject, body) "
                "VALUES ('push', ?, 3, '', '', '{\"v\": 1, \"fields\": {\"device\": \"pixel-7\"}}')",
                (now,),
            )
    finally:
        conn.close()
    with notipipe.DatabaseConnection(db) as store:
        store.save_many(
            [
                notipipe.SMSMessage("+15550001111", "cpu hot", created_at=now),
                notipipe.EmailMessage("ops@example.com", "load", "b", created_at=now),
            ],
            durable=True,
        )
        return store.last(1)[-1].id


def _data(frame: bytes) -> str:
    (line,) = [line for line in frame.decode().splitlines() if line.startswith("data: ")]
    return line.removeprefix("data: ")


_ROWS = """() => [...document.querySelectorAll('#latest tr')].map((r) => ({
  cells: [...r.cells].map((c) => c.textContent),
  kindClass: r.cells[2].className,
  kindColour: getComputedStyle(r.cells[2]).color,
}))"""
_BARS = """() => Object.fromEntries([...document.querySelectorAll('#kinds .bar')].map((b) =>
  [b.querySelector('span').textContent, getComputedStyle(b.querySelector('.fill')).backgroundColor]))"""


def test_a_kind_beyond_email_and_sms_is_counted_and_listed_in_a_neutral_colour(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if _gil_disabled():
        assert _ran_with_the_gil(request, tmp_path)
        return
    db = tmp_path / "kinds.db"
    last = _store(db)
    from notipipe.cli.dashboard._feed import alerts_frame

    pushed = StoredAlert(
        "push",
        {"device": "pixel-7", "title": "disk full", "badge": 2},
        priority=4,
        created_at=time.time(),
        id=last + 1,
    )
    with children() as kids, _browser_page() as page:
        _, url = kids.serve(db)
        page.goto(url)
        page.wait_for_function("() => window.notipipe && window.notipipe.total === 4", timeout=WAIT_MS)
        bars: dict[str, Any] = page.evaluate(_BARS)
        assert bars == {"email": EMAIL, "push": NEUTRAL, "sms": SMS}
        # The follower's frame of a push alert, handed to the page as its stream would.
        page.evaluate("(data) => { onAlerts({ data }); draw(); }", _data(alerts_frame([pushed])))
        page.wait_for_function(
            f"() => document.querySelector('#latest tr')?.dataset.id === '{last + 1}'", timeout=WAIT_MS
        )
        rows = page.evaluate(_ROWS)
    top = rows[0]
    assert [top["cells"][i] for i in (0, 2, 3, 4, 5)] == [
        str(last + 1),
        "push",
        "4",
        "device=pixel-7",
        "title=disk full · badge=2",
    ]
    assert (top["kindClass"], top["kindColour"]) == ("kind-other", NEUTRAL)
    # The rows stored before, the push row written by SQL among them (read back as a kind this
    # process has not registered), each in its colour.
    colours = {row["cells"][2]: row["kindColour"] for row in rows[1:]}
    assert colours == {"email": EMAIL, "push": NEUTRAL, "sms": SMS}
