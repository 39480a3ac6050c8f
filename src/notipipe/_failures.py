"""What happens when an observer's ``update`` raises: count it, hand it on, keep the log readable.

Shared by both publisher twins (failures are off the hot path). Each publisher owns one
``Failures``: the exact failure count and the error handler. Each subscription gets an
``ObserverFailures``, whose bound ``failed`` method the generated fan-out calls when that
observer raises, so the handler is told exactly the object that was subscribed, whatever its
``update`` is bound to (a module function, a ``functools.partial``, another object's method).

Why the fan-out holds these and not the publisher: a kept ``send = pub.notify_all`` may outlive
its publisher, and must keep delivering and isolating failures then. Neither class refers to the
publisher, so the fan-out creates no reference cycle through it; after the publisher is gone,
failures go to the handler it had last.

Why the default handler is throttled: an observer that always raises would write a traceback
for every message, drowning the log and costing more than the delivery itself. When the handler
is ``log_observer_error`` (the default), the first failure of an observer is logged in full;
the ones after it are only counted, and the first failure once ``SUMMARY_INTERVAL`` has passed
logs one line with how many there were. A failure after a quiet interval (nothing counted) is
logged in full again. A custom handler is called for every failure.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager

from notipipe._protocols import ErrorHandler

__all__ = ["SUMMARY_INTERVAL", "DatabaseFailures", "Failures", "ObserverFailures", "log_observer_error"]

_log = logging.getLogger("notipipe")

#: Seconds: the default handler writes at most one summary line per observer this often.
SUMMARY_INTERVAL = 60.0

# The clock of the throttle; a module global so that tests can drive it.
_now = time.monotonic


def log_observer_error(observer: object, message: object, error: Exception) -> None:
    """The default error handler: log the failure, with the observer's repr, to ``notipipe``.

    A publisher calls it for the first failure of each observer and summarises the repeats
    (see ``Publisher.error_handler``); called directly, it logs every time.
    """
    _log.error(
        "observer %r failed on %r: %s: %s",
        observer,
        message,
        type(error).__name__,
        error,
        exc_info=error,
    )


class Failures:
    """One publisher's failures: how many so far, and who is told about each."""

    __slots__ = ("count", "handler", "lock")

    def __init__(self) -> None:
        # Guards ``count`` and every ``ObserverFailures``' throttle state of this publisher; held
        # only to count and decide, never while calling the handler or logging.
        self.lock: AbstractContextManager[object] = threading.Lock()
        self.count = 0
        self.handler: ErrorHandler = log_observer_error


class DatabaseFailures(Failures):
    """Failures of one durable subscription (any backend): counted here, reported to the handler
    the database has when the failure happens (the same throttled default as its other observers)."""

    __slots__ = ("_current_handler",)

    def __init__(self, current_handler: Callable[[], ErrorHandler]) -> None:
        # Failures.__init__ would assign ``handler``, which here follows the database instead.
        self.lock: AbstractContextManager[object] = threading.Lock()
        self.count = 0
        self._current_handler = current_handler

    @property
    def handler(self) -> ErrorHandler:  # type: ignore[override]  # read-only: the database's
        return self._current_handler()


class ObserverFailures:
    """The failures of one subscribed observer; ``failed`` is what the fan-out calls."""

    __slots__ = ("_observer", "_quiet", "_quiet_until", "_shared", "_since", "count", "label")

    def __init__(self, shared: Failures, observer: object, *, weak: bool = False) -> None:
        self._shared = shared
        # A weak subscription must not keep its observer alive through its failure reporter.
        self._observer: Callable[[], object] = weakref.ref(observer) if weak else _Strong(observer)
        self._quiet = 0  # failures counted, not logged, since the last line about this observer
        self._since = 0.0  # when that line was written
        self._quiet_until = -math.inf  # before this, the default handler only counts
        #: This observer's failures (``Metrics.observers``); counted under the shared lock, with
        #: the publisher's total, so the two never disagree.
        self.count = 0
        #: Its metrics label, ``(type name, index)``: given at its first snapshot and kept while
        #: it stays subscribed (see ``_metrics.observer_labels``).
        self.label: tuple[str, int] | None = None

    @property
    def observer(self) -> object:
        """The subscribed object (None once a weakly subscribed observer has been collected)."""
        return self._observer()

    def failed(self, message: object, error: Exception) -> None:
        """Count one failure of ``observer`` on ``message`` and report it. No lock is held."""
        shared = self._shared
        handler = shared.handler
        if handler is log_observer_error:
            now = _now()
            with shared.lock:
                shared.count += 1
                self.count += 1
                line = self._next_line(now)
            if line is not None:
                self._log(line, message, error, None)
            return
        with shared.lock:
            shared.count += 1
            self.count += 1
        try:
            handler(self.observer, message, error)
        except Exception as handler_error:  # noqa: BLE001 - a broken handler must not go silent
            now = _now()
            with shared.lock:
                line = self._next_line(now)
            if line is not None:
                self._log(line, message, error, (handler, handler_error))

    def _next_line(self, now: float) -> tuple[int, float] | None:
        # Under the shared lock. None: only count this failure. (0, 0.0): log it in full.
        # (n, seconds): summarise the n failures (this one included) since the last line.
        if now < self._quiet_until:
            self._quiet += 1
            return None
        quiet, since = self._quiet, self._since
        self._quiet, self._since, self._quiet_until = 0, now, now + SUMMARY_INTERVAL
        return (0, 0.0) if quiet == 0 else (quiet + 1, now - since)

    def _log(
        self,
        line: tuple[int, float],
        message: object,
        error: Exception,
        broken: tuple[ErrorHandler, Exception] | None,
    ) -> None:
        repeats, seconds = line
        if repeats == 0:
            log_observer_error(self.observer, message, error)
        else:
            _log.error(
                "observer %r failed %d more times in the last %.0f s; last error on %r: %s: %s",
                self.observer,
                repeats,
                seconds,
                message,
                type(error).__name__,
                error,
            )
        if broken is not None:
            _log.error("error handler %r failed: %r", *broken)


class _Strong:
    """A strong reference with the call interface of ``weakref.ref``."""

    __slots__ = ("_target",)

    def __init__(self, target: object) -> None:
        self._target = target

    def __call__(self) -> object:
        return self._target
