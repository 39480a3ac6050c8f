"""What happens when an observer's ``update`` raises: count it and hand it on.

Shared by both publisher twins (failures are off the hot path). Each publisher owns one
``Failures``: the exact failure count and the error handler. Each subscription gets an
``ObserverFailures``, whose bound ``failed`` method the generated fan-out calls when that
observer raises, so the handler is told exactly the object that was subscribed, whatever its
``update`` is bound to (a module function, a ``functools.partial``, another object's method).

Why the fan-out holds these and not the publisher: a kept ``send = pub.notify_all`` may outlive
its publisher, and must keep delivering and isolating failures then. Neither class refers to the
publisher, so the fan-out creates no reference cycle through it; after the publisher is gone,
failures go to the handler it had last.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager

from notipipe._protocols import ErrorHandler

__all__ = ["Failures", "ObserverFailures", "log_observer_error"]

_log = logging.getLogger("notipipe")


def log_observer_error(observer: object, message: object, error: Exception) -> None:
    """The default error handler: log the failure, with the observer's repr, to ``notipipe``."""
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
        # Guards ``count``; held only to count, never while calling the handler or logging.
        self.lock: AbstractContextManager[object] = threading.Lock()
        self.count = 0
        self.handler: ErrorHandler = log_observer_error


class ObserverFailures:
    """The failures of one subscribed observer; ``failed`` is what the fan-out calls."""

    __slots__ = ("_shared", "observer")

    def __init__(self, shared: Failures, observer: object) -> None:
        self._shared = shared
        self.observer = observer

    def failed(self, message: object, error: Exception) -> None:
        """Count one failure of ``observer`` on ``message`` and report it. No lock is held."""
        shared = self._shared
        with shared.lock:
            shared.count += 1
        handler = shared.handler
        try:
            handler(self.observer, message, error)
        except Exception as handler_error:  # noqa: BLE001 - a broken handler must not go silent
            log_observer_error(self.observer, message, error)
            _log.error("error handler %r failed: %r", handler, handler_error)
