"""What the dashboard sends, with no web framework in sight: pages of alerts and their SSE frames.

The follower reads the database in pages (``follow``) and turns each into a ``Page``: the
alerts, the id the page continues from, and the page already framed as one Server-Sent Event
whose id is the last alert's stored id. A browser that reconnects sends that id back as
``Last-Event-ID`` and is served from the alert after it: nothing missed, nothing twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from notipipe import StoredMessage, fields_of
from notipipe.cli._shown import Shown, familiar
from notipipe.cli.dashboard._history import HISTORY_SECONDS, recent_seconds

__all__ = [
    "LATEST",
    "PAGE_SIZE",
    "POLL_INTERVAL",
    "REPLAY_PAGE",
    "Page",
    "Reads",
    "Tally",
    "alert_shown",
    "alerts_frame",
    "follow",
    "frame_after",
    "snapshot",
    "snapshot_frame",
]

#: Alerts read per query: a backlog is sent in pieces of this size.
PAGE_SIZE = 5000
#: How often the follower asks the database for new alerts, in seconds, once caught up.
POLL_INTERVAL = 0.025
#: Alerts read per query when a browser is sent what it missed: each is framed at once, so a
#: browser being replayed to holds at most this many alerts' full text, and only during the read.
REPLAY_PAGE = 1000
#: Alerts shown in full in the page's list (and sent in full per event): the rest go as counts.
LATEST = 20


class Reads(Protocol):
    """The public reads the dashboard uses (``DatabaseConnection`` has them)."""

    def after(self, message_id: int, limit: int = 1000, /) -> list[StoredMessage]: ...
    def last(self, n: int = 10, /) -> list[StoredMessage]: ...
    def count_by_kind_and_priority(self, upto_id: int | None = None, /) -> dict[tuple[str, int], int]: ...
    def count_between(self, after_id: int, upto_id: int, /) -> int: ...
    def follow(
        self, after_id: int = 0, *, page: int = ..., poll: float = ..., stop: threading.Event | None = None
    ) -> Iterator[list[StoredMessage]]: ...


def follow(db: Reads, after_id: int, stop: threading.Event) -> Iterator[list[StoredMessage]]:
    """Pages of the alerts committed after ``after_id``, oldest first, until ``stop`` is set.

    ``DatabaseConnection.follow``: on a SQLite file, ids grow in commit order and a read sees a
    commit whole, so asking for the ids after the last one seen misses nothing and repeats
    nothing; that is also what makes ``Last-Event-ID`` an exact resume point here.
    """
    return db.follow(after_id, page=PAGE_SIZE, poll=POLL_INTERVAL, stop=stop)


@dataclass(frozen=True, slots=True)
class Page:
    """The alerts stored after ``after_id`` up to ``last_id``, nothing in between left out, as
    the page shows them: one SSE event (``frame``), made once by the follower for every browser.

    A page holds no alert itself: a browser that falls behind queues these bytes, never the
    alerts' full text (an e-mail's body). One that has been sent every alert up to ``after_id``
    can take the page as it is; one sent some of its alerts already gets the rest read again
    (``frame_after``); one sent fewer has lost a page (see ``BrowserFeed``).
    """

    after_id: int
    last_id: int
    frame: bytes = field(default=b"", compare=False)

    @classmethod
    def of(cls, after_id: int, messages: Sequence[Shown], tally: Tally | None = None) -> Page:
        last_id = messages[-1].id if messages else after_id
        return cls(after_id, last_id, alerts_frame(messages, tally))


def alert_shown(m: Shown) -> dict[str, object]:
    """An alert of any kind as the page's list shows it, in its "to" and "subject / body"
    columns: an e-mail's recipient and subject (never its body), an SMS's number and text, any
    other kind's first field and the rest of its fields (``notipipe.fields_of``), each as
    ``name=value``."""
    fields = fields_of(m)
    if shown := familiar(m.kind, fields):
        to, _, text = shown
    else:
        pairs = [f"{name}={value}" for name, value in fields.items()]
        to, text = (pairs[0] if pairs else ""), " · ".join(pairs[1:])
    return {"id": m.id, "kind": m.kind, "priority": m.priority, "at": m.created_at, "to": to, "text": text}


def _ranges(ids: list[int]) -> list[list[int]]:
    """``[[first, last], ...]``: the ids as runs of consecutive numbers (usually one run)."""
    if ids and ids[-1] - ids[0] == len(ids) - 1:  # ids only grow: one run, the usual case
        return [[ids[0], ids[-1]]]
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def _event(name: str, event_id: int, data: Mapping[str, object]) -> bytes:
    # JSON escapes line breaks, so the data is one "data:" line and cannot end the event early.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\nid: {event_id}\ndata: {text}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Tally:
    """What a run of alerts adds to the page's totals: counts per ``(kind, priority)``, per second
    of ``created_at`` (in whole seconds), and the last ``LATEST`` alerts as the page shows them."""

    counts: Counter[tuple[str, int]]
    seconds: Counter[int]
    latest: list[dict[str, object]]

    @classmethod
    def of(cls, messages: Sequence[Shown]) -> Tally:
        # The follower tallies every alert it reads: Counter over zip keeps the loop in C.
        counts = Counter(zip([m.kind for m in messages], [m.priority for m in messages], strict=True))
        seconds = Counter([int(m.created_at * 1000) // 1000 for m in messages])
        return cls(counts, seconds, [alert_shown(m) for m in messages[-LATEST:]])


def alerts_frame(messages: Sequence[Shown], tally: Tally | None = None) -> bytes:
    """One ``alerts`` event for ``messages`` (oldest first), its id the last one's stored id.

    Every alert is accounted for (its id in ``ids``, its kind and priority in the counts, its
    time in ``at``, in milliseconds after ``t0``); only the last ``LATEST`` go in full. ``sent``
    is when the server read them (milliseconds since the epoch): the page tells the delay of
    the database apart from the delay of the dashboard. ``tally`` is ``Tally.of(messages)``,
    when the caller has it already.
    """
    if not messages:
        return b""
    if tally is None:
        tally = Tally.of(messages)
    t0 = int(messages[0].created_at * 1000)
    kinds, priorities = _by_kind_and_priority(tally.counts)
    data = {
        "ids": _ranges([m.id for m in messages]),
        "kinds": kinds,
        "priorities": priorities,
        "t0": t0,
        "at": [int(m.created_at * 1000) - t0 for m in messages],
        "latest": tally.latest,
        "sent": int(time.time() * 1000),
    }
    return _event("alerts", messages[-1].id, data)


def _by_kind_and_priority(counts: Mapping[tuple[str, int], int]) -> tuple[dict[str, int], dict[str, int]]:
    by_kind: dict[str, int] = {}
    by_priority: dict[str, int] = {}
    for (kind, priority), n in counts.items():
        by_kind[kind] = by_kind.get(kind, 0) + n
        by_priority[str(priority)] = by_priority.get(str(priority), 0) + n
    return by_kind, by_priority


def snapshot_frame(
    upto_id: int,
    counts: Mapping[tuple[str, int], int],
    latest: Sequence[Mapping[str, object]],
    seconds: Mapping[int, int],
) -> bytes:
    """The ``snapshot`` event a new browser starts from: totals up to ``upto_id`` (its event id),
    the latest alerts (as ``alert_shown`` shows them) and the recent alerts per second of their
    ``created_at`` (``[[second, n], ...]``), for the chart's past."""
    kinds, priorities = _by_kind_and_priority(counts)
    data = {
        "upto": upto_id,
        "kinds": kinds,
        "priorities": priorities,
        "latest": list(latest),
        "seconds": sorted([s, n] for s, n in seconds.items() if n),
    }
    return _event("snapshot", upto_id, data)


def snapshot(db: Reads, now: float | None = None) -> tuple[int, bytes]:
    """A new browser's starting point read from the database: the last stored id and its
    ``snapshot`` frame (a dashboard whose follower keeps its totals does without: see ``Totals``).

    The latest alerts are read first and the counts stop at the last of them, so the counts and
    the alerts that follow (``after(upto)``) add up exactly whoever writes meanwhile.
    """
    latest = db.last(LATEST)
    upto = latest[-1].id if latest else 0
    now = time.time() if now is None else now
    seconds = recent_seconds(db, upto, int(now) - HISTORY_SECONDS, int(now))
    counts = db.count_by_kind_and_priority(upto)
    return upto, snapshot_frame(upto, counts, [alert_shown(m) for m in latest], seconds)


def frame_after(db: Reads, after_id: int, upto_id: int | None, limit: int) -> tuple[bytes, int, bool]:
    """Up to ``limit`` alerts stored after ``after_id`` (and up to ``upto_id``, if given), read
    and framed in one call (made in a worker thread): ``(frame, last id framed, more)``.

    Framed where they are read, so no alert's full text outlives the call, however slowly the
    browser takes the frame. The last id is ``after_id`` when there is no alert; ``more`` says
    that more alerts may follow (the read was full, and ``upto_id`` not reached).
    """
    messages = db.after(after_id, limit)
    more = len(messages) == limit
    if upto_id is not None and messages and messages[-1].id >= upto_id:
        messages = [m for m in messages if m.id <= upto_id]
        more = False
    return alerts_frame(messages), messages[-1].id if messages else after_id, more
