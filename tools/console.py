"""Output for the tasks: headings, PASS/FAIL summaries, and commands that show they are alive."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TextIO

# pip prints these for every index location of this kind of machine's configuration; they are
# noise to anyone reading a task's output.
_PIP_NOISE = ("WARNING: Location ",)


def _styled() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def heading(text: str) -> None:
    """A step's heading: bold on a terminal, plain text anywhere else (logs, CI)."""
    line = f"== {text}"
    print(f"\n\033[1m{line}\033[0m" if _styled() else f"\n{line}", flush=True)


def say(text: str) -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Summary:
    """One PASS/FAIL line per check, printed at the end; failing if any line failed."""

    lines: list[str] = field(default_factory=list)

    def add(self, ok: bool, label: str) -> bool:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {label}")
        if not ok:
            warn(f"FAIL: {label}")
        return ok

    @property
    def failed(self) -> bool:
        return any(line.startswith("FAIL") for line in self.lines)

    def show(self) -> None:
        heading("summary")
        for line in self.lines:
            say(line)


def strip_noise(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(_PIP_NOISE))


class _Ticker:
    """While a quiet command runs: a spinner line on a terminal, a line every half minute elsewhere.

    ``detail`` adds how far it has got (e.g. the lines of its log); ``stream`` is where it prints.
    """

    def __init__(
        self, label: str, detail: Callable[[], str] | None = None, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.detail = detail
        self.stream = stream or sys.stdout
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        tty = self.stream.isatty()
        frames = "|/-\\"
        n = 0
        while not self.stop.wait(0.25 if tty else 30.0):
            elapsed = f"{int(time.monotonic() - start)} s{f', {self.detail()}' if self.detail else ''}"
            if tty:
                print(
                    f"\r\033[K{frames[n % 4]} {self.label} ({elapsed})", end="", file=self.stream, flush=True
                )
                n += 1
            else:
                print(f"   ... {self.label}: still running ({elapsed})", file=self.stream, flush=True)
        if tty:
            print("\r\033[K", end="", file=self.stream, flush=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_logged(cmd: Sequence[str | Path], label: str, log: Path, *, cwd: Path | None = None) -> bool:
    """Run a long ``cmd`` with its output appended to ``log``; progress on stderr (the lines of the
    log so far), and on failure the log's end. Returns whether it succeeded."""

    def lines() -> str:
        try:
            return f"{log.read_bytes().count(b'\n')} lines of log"
        except OSError:
            return "no log yet"

    with _Ticker(label, lines, sys.stderr), log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        proc = subprocess.run(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        warn(f"{label}: failed (status {proc.returncode}); the end of {log}:\n{tail}")
    return proc.returncode == 0


def run_quiet(
    cmd: Sequence[str | Path],
    label: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    show_failure: bool = True,
) -> bool:
    """Run ``cmd`` with its output kept back (a progress line instead); on failure show its end.

    The whole output goes to ``log`` when given. Returns whether the command succeeded.
    """
    with _Ticker(label):
        proc = subprocess.run(
            [str(c) for c in cmd],
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
    out = strip_noise(proc.stdout)
    if log is not None:
        log.write_text(out)
    if proc.returncode != 0 and show_failure:
        tail = "\n".join(out.splitlines()[-40:])
        warn(f"{label}: failed (status {proc.returncode})\n{tail}")
    return proc.returncode == 0


def run_streamed(
    cmd: Sequence[str | Path],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    quiet: str = "",
    deadline: float | None = None,
) -> int:
    """Run ``cmd`` showing its output as it comes (pytest's progress) and keep a copy in ``log``.

    With ``quiet`` (a label), the output only goes to ``log`` and a progress line shows instead.
    With ``deadline`` (seconds), a command still running then is killed with everything it
    started, and the status is 124 (as timeout(1)'s): one hung test must not hold a whole CI run.
    The command runs in a process group of its own, so a child it left behind that still holds
    the output pipe is killed too rather than keeping this reader waiting.
    """
    started = time.monotonic()
    with (
        _Ticker(quiet) if quiet else contextlib.nullcontext(),
        log.open("wb") as copy,
        subprocess.Popen(
            [str(c) for c in cmd],
            env=None if env is None else {**os.environ, **env},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as proc,
    ):
        assert proc.stdout is not None

        def show(chunk: bytes) -> None:
            copy.write(chunk)
            if not quiet:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()

        try:
            status = _pump(proc, show, None if deadline is None else started + deadline)
        finally:
            _kill_group(proc)
        if status is None:
            show(f"\n(killed: still running after {deadline:.0f} s)\n".encode())
            return 124
        return status


def _pump(proc: subprocess.Popen[bytes], show: Callable[[bytes], None], until: float | None) -> int | None:
    """Copy ``proc``'s output until it exits (its status) or ``until`` passes (None)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    exited_at: float | None = None
    while True:
        now = time.monotonic()
        if until is not None and now >= until:
            return None
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return proc.wait()
            show(chunk)
        elif proc.poll() is not None:
            # The command is gone but something it started keeps the pipe open: give it a moment
            # to finish writing, then stop reading (the group is killed on the way out).
            exited_at = exited_at or now
            if now - exited_at > 5.0:
                return proc.returncode


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def last_line(text: str) -> str:
    """pytest's closing line without its ``=`` padding."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip("= ").strip() if lines else "(no output)"
