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

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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
    if _ran_with_the_gil(request, tmp_path):
        return
    with _browser_page() as page:
        _follow_across_reconnects(page, tmp_path, record_property)


def _ran_with_the_gil(request: pytest.FixtureRequest, tmp_path: Path) -> bool:
    """On a free-threaded interpreter, run the test in a child pytest that has the GIL (see the
    module's docstring) and say so; elsewhere False: the test runs here."""
    if not _gil_disabled():
        return False
    pytest_args = ["-p", "no:cacheprovider", "-p", "no:run-parallel", "-q", "-s"]
    here = f"{request.node.path}::{request.node.name}"
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
    return True


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


# -- the first second: a page opened on stored alerts ---------------------------------------------

#: How long a page opened on stored alerts may take to show them all (nothing is written meanwhile):
#: a page that waits for new alerts, or for a follower's first poll, never gets there.
FIRST_PAINT_MS = 15_000
#: The stored alerts' created_at spans this many seconds before the page opens (inside the chart).
HISTORY_SECONDS = 60
#: Alerts stored evenly over ``HISTORY_SECONDS``, and a burst of more in one of its seconds (so the
#: chart's axis reaches the thousands, where labels are written compactly).
SPREAD, BURST = 1200, 2300
#: How far apart, in pixels, text may end and still be aligned on its right edge.
ALIGNED_PX = 0.5

#: Set before the page's own script: records the chart's texts of its last frame (its axis labels
#: among them) and the total the page showed when it first said it was live.
_WATCH = """
window.__drawn = [];
const clearRect = CanvasRenderingContext2D.prototype.clearRect;
CanvasRenderingContext2D.prototype.clearRect = function (...args) {
  window.__drawn = [];
  return clearRect.apply(this, args);
};
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  window.__drawn.push([String(text), y]);
  return fillText.call(this, text, x, y, ...rest);
};
window.__liveWith = null;
// Watched from before the page's first line is parsed (not from DOMContentLoaded, which a busy
// machine may fire after the stream has already made the page live): every change, anywhere.
new MutationObserver(() => {
  const status = document.getElementById("status");
  if (window.__liveWith === null && status !== null && status.textContent === "live")
    window.__liveWith = document.getElementById("total").textContent;
}).observe(document, { childList: true, characterData: true, subtree: true });
"""

#: The right edges of the text of a column's header and of its cells in the list of latest alerts.
_COLUMN_EDGES = """
(name) => {
  const right = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    return range.getBoundingClientRect().right;
  };
  const heads = [...document.querySelectorAll("thead th")];
  const column = heads.findIndex((th) => th.textContent === name);
  const cells = [...document.querySelectorAll("#latest tr")].map((tr) => tr.cells[column]);
  return [right(heads[column]), cells.map(right)];
}
"""


class Opened:
    """A page opened on a database of stored alerts, nothing written after."""

    def __init__(self, page: Any, per_second: dict[int, int], shot: Path, failures: list[str]) -> None:
        self.page = page
        self.per_second = per_second  # the stored alerts per second of created_at
        self.total = sum(per_second.values())
        self.shot = shot
        self.failures = failures  # requests that failed, and the console's errors

    def where(self) -> str:
        self.page.screenshot(path=str(self.shot))
        return f" (screenshot: {self.shot})"


def _store_recent(db: Path, now: float) -> dict[int, int]:
    """Store alerts created over the ``HISTORY_SECONDS`` before ``now``, in created_at order, as
    writers store them; return how many were created in each second."""
    times = [now - HISTORY_SECONDS + HISTORY_SECONDS * i / SPREAD for i in range(SPREAD)]
    burst = int(now) - HISTORY_SECONDS // 2
    times += [burst + i / BURST for i in range(BURST)]
    times.sort()
    messages: list[notipipe.EmailMessage | notipipe.SMSMessage] = []
    for i, at in enumerate(times):
        priority = 1 + i % 5
        if i % 3 == 2:
            messages.append(
                notipipe.SMSMessage(f"+1555000{i:04d}", f"sms {i}", priority=priority, created_at=at)
            )
        else:
            messages.append(
                notipipe.EmailMessage(
                    f"ops{i}@example.com", f"disk {i}", "body", priority=priority, created_at=at
                )
            )
    with notipipe.DatabaseConnection(db) as store:
        store.save_many(messages, durable=True)
        assert sum(store.count_by_kind().values()) == len(times)
    counts: dict[int, int] = {}
    for at in times:
        second = int(at * 1000) // 1000
        counts[second] = counts.get(second, 0) + 1
    return counts


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened | None]:
    """``notipipe serve`` on a database of stored alerts and a page opened on it (None on a
    free-threaded interpreter, where the test runs again in a child: see the module's docstring)."""
    if _gil_disabled():
        yield None
        return
    db = tmp_path / "alerts.db"
    per_second = _store_recent(db, time.time())
    failures: list[str] = []
    with children() as kids, _browser_page() as page:
        _, url = kids.serve(db)
        page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("requestfailed", lambda r: failures.append(f"failed {r.url}: {r.failure}"))
        page.on("console", lambda m: failures.append(f"console: {m.text}") if m.type == "error" else None)
        page.add_init_script(_WATCH)
        page.goto(url)
        yield Opened(page, per_second, tmp_path / "first-second.png", failures)


def test_a_page_opened_on_stored_alerts_shows_their_totals_and_recent_history_at_once(
    opened: Opened | None, request: pytest.FixtureRequest, tmp_path: Path, record_property: Any
) -> None:
    if opened is None:
        assert _ran_with_the_gil(request, tmp_path)
        return
    page, total = opened.page, opened.total
    shown = f"{total:,}"
    try:
        page.wait_for_function(
            f"() => document.getElementById('total').textContent === '{shown}'", timeout=FIRST_PAINT_MS
        )
    except Exception as error:  # Playwright's TimeoutError: say what the page showed instead
        raise AssertionError(
            f"the page never showed the stored total {shown}: {page.text_content('#total')!r}"
            + opened.where()
        ) from error
    # It said "live" only once it showed what is stored, never "live" with a total of 0.
    live_with = page.evaluate("() => window.__liveWith")
    assert live_with == shown, f"it said live showing a total of {live_with}" + opened.where()
    assert _state(page, "received") == 0  # counted from the store, not from alerts arriving
    # The chart holds every second of the stored alerts' created_at before the page opened.
    seconds = dict(page.evaluate("() => [...window.notipipe.perSecond.entries()]"))
    assert seconds == opened.per_second, (
        "the chart's past is not the stored alerts per second" + opened.where()
    )
    with notipipe.DatabaseConnection(tmp_path / "alerts.db") as store:
        by_kind = store.count_by_kind()
        by_priority = {str(p): n for p, n in store.count_by_priority().items()}
    assert (_state(page, "kinds"), _state(page, "priorities")) == (by_kind, by_priority), opened.where()
    record_property("screenshot", opened.where())


def test_the_page_loads_everything_it_asks_for_a_favicon_included(
    opened: Opened | None, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if opened is None:
        assert _ran_with_the_gil(request, tmp_path)
        return
    page = opened.page
    page.wait_for_function(f"() => document.getElementById('total').textContent === '{opened.total:,}'")
    icon = page.evaluate("() => document.querySelector('link[rel~=icon]')?.href ?? null")
    assert icon is not None, "the page names no icon: the browser asks for /favicon.ico" + opened.where()
    status = page.evaluate("(href) => fetch(href).then((r) => r.status)", icon)
    assert status == 200, f"its icon {icon[:60]} answers {status}" + opened.where()
    assert opened.failures == [], opened.where()


def test_numbers_in_the_latest_alerts_end_under_their_header(
    opened: Opened | None, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if opened is None:
        assert _ran_with_the_gil(request, tmp_path)
        return
    page = opened.page
    page.wait_for_function("() => document.querySelectorAll('#latest tr').length === 20")
    for column in ("id", "priority"):
        head, cells = page.evaluate(_COLUMN_EDGES, column)
        edges = [head, *cells]
        assert max(edges) - min(edges) <= ALIGNED_PX, (
            f"the {column} column's numbers and header end at {sorted(set(edges))}" + opened.where()
        )


def test_the_chart_axis_is_labelled_at_round_numbers_written_compactly(
    opened: Opened | None, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if opened is None:
        assert _ran_with_the_gil(request, tmp_path)
        return
    page = opened.page
    most = max(opened.per_second.values())
    page.wait_for_function(f"() => document.getElementById('total').textContent === '{opened.total:,}'")
    page.wait_for_function("() => window.__drawn.length > 0")  # a frame drawn with what it showed
    drawn = page.evaluate("() => window.__drawn")
    bottom = max(y for _, y in drawn)  # the time axis's labels, under the plot
    labels = [text for text, y in drawn if y < bottom]
    values = [_compact_value(text) for text in labels]
    assert None not in values, f"axis labels that are no compact number: {labels}" + opened.where()
    ticks = sorted(v for v in values if v is not None)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0, f"{labels}" + opened.where()
    assert ticks == [i * step for i in range(len(ticks))], f"uneven steps: {labels}" + opened.where()
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert mantissa in (1, 2, 5), f"steps of {step}: {labels}" + opened.where()
    assert ticks[-1] >= most > ticks[-2], f"the axis {labels} for at most {most}/s" + opened.where()
    assert any(label.endswith("k") for label in labels), f"thousands written out: {labels}" + opened.where()


def _compact_value(text: str) -> float | None:
    """``"1.5k"`` -> 1500, ``"250"`` -> 250; None for anything else (``"2,500"``)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([kMG]?)", text)
    if found is None:
        return None
    return float(found[1]) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[found[2]]
