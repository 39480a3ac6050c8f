"""Progress and summary output of ``notipipe run``, with rich (the ``cli`` extra) or without it.

``--progress lines`` prints plain lines on stdout, so a log or a test can read how many alerts are
durable while the run goes on. ``--progress bar`` is rich's live bar when rich is installed and
stdout is a terminal; otherwise a plain progress line on stderr stands in for it, so the command
never needs rich to run. The summary is rich's table, or the same rows as plain text.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, TextIO

from notipipe import DatabaseConnection

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["Display", "Mode", "rich_installed"]

type Mode = Literal["auto", "bar", "lines", "none"]

#: How often a progress line is written where it cannot be redrawn in place (a pipe, a log).
LINE_INTERVAL = 0.5


def rich_installed() -> bool:
    """Whether rich can be imported: without it the bar and the table have plain stand-ins."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class _Bar(Protocol):
    def start(self) -> None: ...
    def update(self, done: int, durable: int, rate: str) -> None: ...
    def stop(self) -> None: ...


class Display:
    """What ``notipipe run`` shows: ``refresh()`` while it runs (inside ``with``), then ``summary()``.

    ``mode`` is ``--progress``: ``auto`` is the bar on a terminal, else lines; ``none`` shows only
    the summary. ``produced`` holds each producer thread's count, read without a lock.
    """

    def __init__(self, mode: str, total: int, db: DatabaseConnection, produced: list[int]) -> None:
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "lines"
        self._mode = mode
        self._total = total
        self._db = db
        self._produced = produced
        self._rich = rich_installed()
        self._bar: _Bar | None = None
        self._start = time.perf_counter()
        self._last_line = 0.0

    def __enter__(self) -> Self:
        self._start = time.perf_counter()
        if self._mode == "bar":
            if self._rich and sys.stdout.isatty():
                self._bar = _RichBar(self._total)
            else:
                self._bar = _PlainBar(self._total, sys.stderr)
            self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def refresh(self) -> None:
        """Show how many alerts are produced and how many durable so far."""
        # Read the durable count before printing it: whatever is printed is already committed.
        durable = self._db.durable_count
        done = sum(self._produced)
        elapsed = time.perf_counter() - self._start
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else ""
        if self._bar is not None:
            self._bar.update(done, durable, rate)
        elif self._mode == "lines" and (elapsed - self._last_line >= LINE_INTERVAL or done == self._total):
            self._last_line = elapsed
            print(f"progress: {done:,}/{self._total:,} alerts, durable {durable:,}, {rate}", flush=True)

    def summary(self, rows: dict[str, str]) -> None:
        """Print the run's summary on stdout: one row per figure, its name and its value."""
        title = "notipipe run: summary"
        if not self._rich:
            width = max((len(key) for key in rows), default=0)
            lines = [title, *(f"{key:<{width}} │ {value}" for key, value in rows.items())]
            print("\n".join(lines), flush=True)
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows.items():
            table.add_row(key, value)
        _console().print(table)


def _console() -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's default exits with status 1 itself; let the command end as it does for any
            # closed output (quietly, with its own status).
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _Console()


class _RichBar:
    """rich's live bar on stdout (a terminal)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress: Progress = Progress(
            TextColumn("[bold]alerts"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("durable {task.fields[durable]}"),
            TimeElapsedColumn(),
            console=_console(),
        )
        self._task: TaskID = self._progress.add_task("alerts", total=total, rate="", durable="0")

    def start(self) -> None:
        self._progress.start()

    def update(self, done: int, durable: int, rate: str) -> None:
        self._progress.update(self._task, completed=done, rate=rate, durable=f"{durable:,}")

    def stop(self) -> None:
        self._progress.stop()


class _PlainBar:
    """The bar without rich, or off a terminal: one line on ``out``, redrawn in place on a terminal
    and written anew every ``LINE_INTERVAL`` elsewhere (a pipe or a log has no carriage return)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self._total = total
        self._out = out
        self._in_place = out.isatty()
        self._start = time.perf_counter()
        self._written = -LINE_INTERVAL
        self._width = 0
        self._last = ""
        self._last_counts = (-1, -1)

    def start(self) -> None:
        self._start = time.perf_counter()

    def update(self, done: int, durable: int, rate: str) -> None:
        elapsed = time.perf_counter() - self._start
        share = done / self._total if self._total else 1.0
        minutes, seconds = divmod(int(elapsed), 60)
        self._last = (
            f"alerts {done:,}/{self._total:,} ({share:.0%}) {rate}, durable {durable:,}, "
            f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
        )
        if self._in_place:
            # Blanks over whatever a longer previous line left behind.
            self._out.write("\r" + self._last.ljust(self._width))
            self._width = len(self._last)
            self._out.flush()
        elif (done, durable) != self._last_counts and (
            elapsed - self._written >= LINE_INTERVAL or done == self._total
        ):
            self._written, self._last_counts = elapsed, (done, durable)
            self._out.write(self._last + "\n")
            self._out.flush()

    def stop(self) -> None:
        if self._in_place and self._width:
            self._out.write("\n")  # the summary starts on a line of its own
            self._out.flush()
