"""What the page shows from its first second, kept by the follower: each new browser is sent it at
once, instead of the database counting every stored alert again for each page opened.

The follower counts the stored alerts once, when it starts (``load``), then adds each page it
reads (``add``) before publishing it: the totals always stand at the last page published, so a
browser that takes them (``frame``) and then the pages after them sees every alert once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

from notipipe import StoredMessage
from notipipe.cli.dashboard._feed import LATEST, Reads, Tally, alert_shown, snapshot_frame
from notipipe.cli.dashboard._history import HISTORY_SECONDS, recent_seconds

__all__ = ["Totals"]

#: Seconds of created_at ahead of the clock kept for the chart (a writer's clock a little ahead);
#: later ones (another tool's rows) are counted in the totals only.
AHEAD_SECONDS = 60


class Totals:
    """The stored alerts up to ``upto``: counts per kind and priority, per recent second of
    ``created_at``, and the latest alerts. Thread-safe: the follower writes, browsers read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held for a few dict updates, never while reading the database
        self._loaded = threading.Condition(self._lock)
        self._upto: int | None = None  # None: not counted yet
        self._counts: Counter[tuple[str, int]] = Counter()
        self._seconds: Counter[int] = Counter()
        self._latest: deque[dict[str, object]] = deque(maxlen=LATEST)

    def load(self, db: Reads, latest: Sequence[StoredMessage]) -> int:
        """Count what is stored up to the last of ``latest`` (the last alerts stored), the one full
        count (on a large file, seconds); its id."""
        upto = latest[-1].id if latest else 0
        now = int(time.time())
        seconds = recent_seconds(db, upto, now - HISTORY_SECONDS, now)
        counts = db.count_by_kind_and_priority(upto)
        with self._loaded:
            self._upto = upto
            self._counts = Counter(counts)
            self._seconds = Counter(seconds)
            self._latest.clear()
            self._latest.extend(alert_shown(m) for m in latest)
            self._loaded.notify_all()
        return upto

    def add(self, last_id: int, tally: Tally) -> None:
        """Count a page of alerts, up to ``last_id``."""
        now = int(time.time())
        with self._lock:
            self._upto = last_id
            self._counts.update(tally.counts)
            self._seconds.update({s: n for s, n in tally.seconds.items() if s <= now + AHEAD_SECONDS})
            self._latest.extend(tally.latest)
            for second in [s for s in self._seconds if s < now - HISTORY_SECONDS]:
                del self._seconds[second]

    def upto(self) -> int | None:
        """The id of the last alert counted (None: not counted yet)."""
        with self._lock:
            return self._upto

    def by_kind(self) -> dict[str, int] | None:
        """The stored alerts per kind (None: not counted yet)."""
        with self._lock:
            if self._upto is None:
                return None
            by_kind: Counter[str] = Counter()
            for (kind, _), n in self._counts.items():
                by_kind[kind] += n
            return dict(by_kind)

    def frame(self, timeout: float) -> tuple[int, bytes] | None:
        """The ``snapshot`` frame of the totals and the id they stand at; None if they are not
        counted within ``timeout`` seconds."""
        with self._loaded:
            if not self._loaded.wait_for(lambda: self._upto is not None, timeout):
                return None
            upto = self._upto
            assert upto is not None
            counts, seconds, latest = dict(self._counts), dict(self._seconds), list(self._latest)
        since = int(time.time()) - HISTORY_SECONDS
        recent = {s: n for s, n in seconds.items() if s >= since}
        return upto, snapshot_frame(upto, counts, latest, recent)
