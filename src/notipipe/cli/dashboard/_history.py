"""The chart's past: how many of the stored alerts were created in each recent second.

Counted without reading the recent rows, which on a busy file are millions: writers store alerts
in about the order they create them, so ``created_at`` grows with the id, and the first id of
each second is found by a search over ids (``after(id, 1)``, one primary-key read per step).
A second's count is then the alerts stored between its first id and the next second's, counted
by the store (``count_between``: ids leave gaps, after a prune, and on a NATS stream at every
chunk boundary). Where a row breaks the order (another tool's, a writer's clock set back), the
count of the seconds around it is off, never the totals: the chart is a picture of the rate, the
totals are counted.
"""

from __future__ import annotations

from typing import Protocol

from notipipe import StoredMessage

__all__ = ["HISTORY_SECONDS", "recent_seconds"]

#: Seconds of the past the chart shows (the page's ``CHART_SECONDS``).
HISTORY_SECONDS = 120


class After(Protocol):
    """The reads the search needs (``DatabaseConnection.after`` and ``count_between``)."""

    def after(self, message_id: int, limit: int = 1000, /) -> list[StoredMessage]: ...
    def count_between(self, after_id: int, upto_id: int, /) -> int: ...


def recent_seconds(db: After, upto_id: int, since: int, until: int) -> dict[int, int]:
    """Alerts stored with an id up to ``upto_id`` per second of ``created_at``, for each second
    from ``since`` to ``until`` (Unix seconds) that has any."""
    counts: dict[int, int] = {}
    start = _first_at(db, upto_id, since, 0, upto_id)
    for second in range(since, until + 1):
        end = _gallop(db, upto_id, second + 1, start)
        if end > start and (n := db.count_between(start, end)):
            counts[second] = n
        start = end
    return counts


def _created_from(db: After, upto_id: int, at: float, after_id: int) -> bool:
    """Whether the first alert after ``after_id`` was created at ``at`` or later, or is none of
    the alerts counted (past ``upto_id``, or no alert at all)."""
    found = db.after(after_id, 1)
    return not found or found[0].id > upto_id or found[0].created_at >= at


def _first_at(db: After, upto_id: int, at: float, low: int, high: int) -> int:
    """The id after which alerts are created at ``at`` or later, in ``low..high`` (``high``
    qualifies): a binary search."""
    while low < high:
        middle = (low + high) // 2
        if _created_from(db, upto_id, at, middle):
            high = middle
        else:
            low = middle + 1
    return low


def _gallop(db: After, upto_id: int, at: float, low: int) -> int:
    """``_first_at`` from ``low`` on, in steps that double: the next second starts near the last."""
    if _created_from(db, upto_id, at, low):
        return low
    step = 1
    while low + step < upto_id and not _created_from(db, upto_id, at, low + step):
        low, step = low + step, step * 2
    return _first_at(db, upto_id, at, low + 1, min(low + step, upto_id))
