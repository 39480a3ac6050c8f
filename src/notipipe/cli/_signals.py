"""The signals that stop the commands that run until stopped: ``tail --follow`` and ``serve``.

SIGTERM (``kill PID``, a service manager, a container stop) always stops them. SIGINT (Ctrl-C)
stops them too, unless the process was started with SIGINT ignored: a job started in the
background by a non-interactive shell (``notipipe serve &`` in a script) or under ``nohup``
inherits SIGINT ignored, and keeps ignoring it, as POSIX asks and as other commands do there.

Either signal ends the command the same way: it is noted, the command's loop ends between two
steps (never inside a read or a write), its output is flushed and its database closed, and it
exits with the status a shell reports for the signal: 130 (128 + SIGINT), 143 (128 + SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Self

__all__ = ["STOP_SIGNALS", "StopSignals", "exit_status"]

#: The signals that stop ``tail --follow`` and ``serve``, in the order they are installed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], object] | int | None


def exit_status(signum: int) -> int:
    """The exit status of a command stopped by ``signum``, as a shell reports it: 128 + signum."""
    return 128 + signum


class StopSignals:
    """While active, SIGTERM, and SIGINT unless it was ignored on entry, are noted instead of
    ending the process (SIGTERM) or raising ``KeyboardInterrupt`` (SIGINT), so that a loop
    that waits on ``event`` or asks ``received()`` ends quietly where it chooses.

    ``also`` is called with each signal, in the signal handler (on the main thread): a server
    uses it to begin its own shutdown. Off the main thread (where no handler can be set), nothing
    is installed and the signals keep their effect.
    """

    def __init__(self, also: Callable[[int, FrameType | None], None] | None = None) -> None:
        #: Set by the first stopping signal: a loop waiting on it wakes at once.
        self.event = threading.Event()
        #: The first stopping signal received, ``None`` while there was none.
        self.signum: int | None = None
        self._also = also
        self._previous: dict[int, _Handler] = {}

    def received(self) -> bool:
        """Whether a stopping signal has come."""
        return self.event.is_set()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            # Set from another thread: the handler runs on the main thread, which may be inside
            # the event's own lock (Event.wait), and that lock is not reentrant.
            threading.Thread(target=self.event.set, name="stop-signal").start()
        if self._also is not None:
            self._also(signum, frame)

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signum == signal.SIGINT and signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # started in the background or under nohup: Ctrl-C is not for it
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, previous in self._previous.items():
            # None: a handler not set from Python; the default is the nearest to it.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
