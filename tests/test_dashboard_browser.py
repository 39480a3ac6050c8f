"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

``notipipe run`` writes a SQLite file while ``notipipe serve`` serves it; the page must show the
alerts as they are written, survive a server restart and a reconnect of its own with no alert
missed or repeated, and end with the same counts and latest alerts as the store.

Needs ``apt-get install chromium`` (or ``$NOTIPIPE_CHROMIUM`` naming a Chromium) and
``pip install playwright`` (Playwright's own browser download is not used); a missing one is a
failure that says so, never a skip.

On a free-threaded interpreter Playwright's sync API cannot run in the test process: its
greenlet does not support running without the GIL and would turn the GIL back on for the rest
of the suite. There the test runs itself again in a child pytest with ``-X gil=1``; the
``notipipe run`` and ``notipipe serve`` it starts are still free-threaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import notipipe
from tests._dashboard_procs import Children, children, ranges, stop

pytestmark = [
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.thread_unsafe(reason="one browser and child processes per test"),
]

#: How long the page may take to show what the server has (a busy machine, a restart).
WAIT_MS = 90_000
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking"]


def _chromium() -> str:
    named = os.environ.get("NOTIPIPE_CHROMIUM")
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not os.access(found, os.X_OK):
        where = f"$NOTIPIPE_CHROMIUM={named}" if named else "none on PATH"
        pytest.fail(
            f"no Chromium for the browser test ({where}): "
            "install Debian's with `apt-get install -y chromium`, or set NOTIPIPE_CHROMIUM to one",
            pytrace=False,
        )
    return found


@contextmanager
def _browser_page() -> Iterator[Any]:
    """A page in headless Chromium, closed after the test."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "Playwright is missing: `pip install playwright` (its browser download is not needed: "
            "the test drives Debian's chromium)",
            pytrace=False,
        )
    for module in ("starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            pytest.fail(f"{module} is missing: pip install 'notipipe[dashboard]'", pytrace=False)
    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 820})
        finally:
            browser.close()


def _state(page: Any, expression: str) -> Any:
    return page.evaluate(f"() => window.notipipe.{expression}")


def _wait(page: Any, condition: str) -> None:
    page.wait_for_function(f"() => window.notipipe && ({condition})", timeout=WAIT_MS)


def _start_run(kids: Children, db: Path) -> Any:
    # notipipe run at its defaults (a million alerts from two threads) into the served file.
    return kids.start("run", "--db", str(db), "--progress", "none")


def _gil_disabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return check is not None and not check()


def test_the_page_follows_notipipe_run_across_reconnects(
    tmp_path: Path, record_property: Any, request: pytest.FixtureRequest
) -> None:
    if _gil_disabled():
        # See the module's docstring: the same test, in a child pytest that has the GIL.
        pytest_args = ["-p", "no:cacheprovider", "-p", "no:run-parallel", "-q", "-s"]
        here = f"{__file__}::{request.node.name}"
        child = subprocess.run(
            [
                sys.executable,
                "-X",
                "gil=1",
                "-m",
                "pytest",
                *pytest_args,
                here,
                "--basetemp",
                str(tmp_path / "c"),
            ],
            cwd=request.config.rootpath,
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        print(child.stdout[-3000:])
        assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
        return
    with _browser_page() as page:
        _follow_across_reconnects(page, tmp_path, record_property)


def _follow_across_reconnects(page: Any, tmp_path: Path, record_property: Any) -> None:
    db = tmp_path / "alerts.db"
    with children() as kids:
        seed = kids.start("run", "--db", str(db), "-n", "1000", "--progress", "none")
        assert seed.wait(timeout=120) == 0, seed.communicate()
        server, url = kids.serve(db)
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        page.goto(url)
        _wait(page, "window.notipipe.connects >= 1 && window.notipipe.snapshotUpto !== null")
        assert _state(page, "snapshotUpto") == 1000
        assert _state(page, "total") == 1000

        run = _start_run(kids, db)
        # The counts rise as the run writes (twice, to see it is live, not a one-off).
        _wait(page, "window.notipipe.total > 1000")
        seen = _state(page, "total")
        _wait(page, f"window.notipipe.total > {seen}")
        # The screenshot while the run writes (the chart is live), once a fifth of it is shown.
        shot = Path(os.environ.get("NOTIPIPE_SCREENSHOT") or tmp_path / "dashboard.png")
        _wait(page, "window.notipipe.total > 200000")
        page.screenshot(path=str(shot))
        record_property("screenshot", str(shot))

        # A server restart: the browser reconnects by itself, with Last-Event-ID.
        status, err = stop(server)
        assert status == 130, err
        server, url2 = kids.serve(db, port)
        assert url2 == url
        _wait(page, "window.notipipe.connects >= 2")

        # The page's own reconnect (a new EventSource, told where it was with ?after=).
        page.evaluate("() => window.notipipe.reconnect()")
        _wait(page, "window.notipipe.connects >= 3")

        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        _check_against_the_store(page, db)

        lag = page.evaluate("() => [window.notipipe.lagPercentile(0.5), window.notipipe.lagPercentile(0.99)]")
        print(f"\ndashboard screenshot: {shot}; lag p50/p99 (ms, across the reconnects): {lag}")

        status, err = stop(server, signal.SIGTERM)
        assert status == 143, err  # stopped cleanly as by Ctrl-C (not ended by the signal itself)


def _check_against_the_store(page: Any, db: Path) -> None:
    """Every alert written after the page's snapshot reached it exactly once, across both
    reconnects; its totals and its list of the latest alerts are the store's."""
    with notipipe.DatabaseConnection(db) as store:
        last_id = store.last(1)[-1].id
        _wait(page, f"window.notipipe.lastId === {last_id}")
        stored_ids: list[int] = []
        start = _state(page, "snapshotUpto")
        while chunk := store.after(stored_ids[-1] if stored_ids else start, 100_000):
            stored_ids.extend(m.id for m in chunk)
        by_kind = store.count_by_kind()
        by_priority: dict[str, int] = {}
        for (_, priority), n in store.count_by_kind_and_priority().items():
            by_priority[str(priority)] = by_priority.get(str(priority), 0) + n
        latest = store.last(20)

    assert _state(page, "duplicates") == 0
    assert _state(page, "gaps") == []
    assert _state(page, "ranges") == ranges(stored_ids)
    assert _state(page, "received") == len(stored_ids)
    assert _state(page, "total") == sum(by_kind.values())
    assert _state(page, "kinds") == by_kind
    assert _state(page, "priorities") == by_priority

    # The list shows the latest alerts, newest first, as stored.
    page.wait_for_function(
        f"() => document.querySelector('#latest tr')?.dataset.id === '{last_id}'", timeout=WAIT_MS
    )
    rows = page.eval_on_selector_all(
        "#latest tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    expected = [
        [
            str(m.id),
            m.kind,
            str(m.priority),
            getattr(m, "recipient", None) or getattr(m, "phone_number", ""),
            getattr(m, "subject", None) if m.kind == "email" else getattr(m, "body", ""),
        ]
        for m in reversed(latest)
    ]
    assert [[r[0], r[2], r[3], r[4], r[5]] for r in rows] == expected
    assert page.text_content("#total") == f"{sum(by_kind.values()):,}"
