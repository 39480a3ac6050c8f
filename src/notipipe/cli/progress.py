"""Progress and summary output of ``notipipe run``: a rich live bar on a terminal, plain lines
otherwise (so a log or a test can read how many alerts are durable while the run goes on)."""

from __future__ import annotations

import errno
import os
import sys
import time
from types import TracebackType
from typing import Literal, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from notipipe._database import DatabaseConnection

type Mode = Literal["auto", "bar", "lines", "none"]


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's default exits with status 1 itself; let the command end as it does for any
        # closed output (quietly, with its own status).
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


class Display:
    def __init__(self, mode: str, total: int, db: DatabaseConnection, produced: list[int]) -> None:
        if mode == "auto":
            mode = "bar" if sys.stdout.isatty() else "lines"
        self.mode = mode
        self.total = total
        self.db = db
        self.produced = produced
        self.console = _Console()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._start = time.perf_counter()
        self._last_line = 0.0

    def __enter__(self) -> Self:
        self._start = time.perf_counter()
        if self.mode == "bar":
            self._progress = Progress(
                TextColumn("[bold]alerts"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("durable {task.fields[durable]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task("alerts", total=self.total, rate="", durable="0")
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def refresh(self) -> None:
        # Read the durable count before printing it: whatever is printed is already committed.
        durable = self.db.durable_count
        done = sum(self.produced)
        elapsed = time.perf_counter() - self._start
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else ""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, rate=rate, durable=f"{durable:,}")
        elif self.mode == "lines" and (elapsed - self._last_line >= 0.5 or done == self.total):
            self._last_line = elapsed
            print(f"progress: {done:,}/{self.total:,} alerts, durable {durable:,}, {rate}", flush=True)

    def summary(self, rows: dict[str, str]) -> None:
        table = Table(title="notipipe run: summary", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows.items():
            table.add_row(key, value)
        self.console.print(table)
