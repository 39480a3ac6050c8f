"""Other processes in the tests, both ends: how a test starts a child on the twin under test and
waits for it, and how a child module (``python -m tests._children NAME ARGS...``) offers its
programs and reports its progress.

The twin reaches a child the way users select it, through ``NOTIPIPE_NO_EXTENSIONS``; the
caller's ``NOTIPIPE_DB`` never does. This module imports nothing of pytest's, so that the child
modules can use it too.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import Impl

__all__ = [
    "ROOT",
    "Following",
    "Lines",
    "Programs",
    "child_env",
    "follow_tail",
    "kill",
    "run_child",
    "say",
    "spawn",
    "wait_forked",
    "wait_until",
    "with_sigint",
]

#: The checkout's root: children run from here, so that ``-m tests.<module>`` finds the package.
ROOT = Path(__file__).resolve().parents[1]


# -- the test's side ------------------------------------------------------------------------------


def child_env(impl: Impl) -> dict[str, str]:
    """This process's environment for a child that runs ``impl``'s twin, without ``NOTIPIPE_DB``."""
    env = dict(os.environ)
    env.pop("NOTIPIPE_DB", None)
    env["NOTIPIPE_NO_EXTENSIONS"] = "1" if impl.name == "py" else "0"
    return env


def spawn(impl: Impl, module: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    """``python -m module args...`` on ``impl``'s twin, its output piped as text (and its input,
    with ``stdin``), to read line by line while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(impl),
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(impl: Impl, module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m module args...`` on ``impl``'s twin, run to its end; its status and output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=child_env(impl),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Run by the child's interpreter before its program: SIGINT set as asked, then the program in
#: its place (the same process: the test's signals reach the program).
_SET_SIGINT_AND_EXEC = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, getattr(signal, sys.argv[1])); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def with_sigint(argv: Sequence[str], *, ignored: bool = False) -> list[str]:
    """``argv`` (an absolute program first), started with SIGINT at its default, whatever this
    process has; with ``ignored``, with SIGINT ignored, as a background job or nohup has it.

    For the children that a test stops with Ctrl-C (SIGINT): across ``exec`` a handler becomes
    the default, but an ignored signal stays ignored, so a pytest started with SIGINT ignored
    (``pytest &`` in a script, ``nohup pytest``) would pass that on, and a Python child does not
    even install its KeyboardInterrupt handler then. Set in the child before its program starts,
    not with ``preexec_fn`` (unsafe with the test process's threads) nor in this process.
    """
    disposition = "SIG_IGN" if ignored else "SIG_DFL"
    return [sys.executable, "-c", _SET_SIGINT_AND_EXEC, disposition, *argv]


def kill(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGKILL ``proc`` unless it has ended (no atexit, no flush), then reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=timeout)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False): for what
    another process or the server brings about, which gives this one nothing to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_forked(pid: int, timeout: float) -> int | None:
    """The exit code of the forked child ``pid``; ``None`` if it has not ended within ``timeout``
    (a hang: it is then killed and reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


class Lines:
    """A child's stdout read by a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = 60) -> str | None:
        """The next line; None once the output has ended (``queue.Empty`` at ``timeout``)."""
        return self._queue.get(timeout=timeout)


class Following:
    """A running ``notipipe tail --follow``: the lines it prints, each awaited with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.proc = proc
        self._lines = Lines(proc.stdout)

    def next(self, timeout: float = 60) -> str | None:
        """The next line printed; None once its output has ended."""
        return self._lines.next(timeout)

    def line(self, timeout: float = 60) -> str:
        """The next line printed, which must come (its stderr in the failure if its output ended)."""
        line = self.next(timeout)
        assert line is not None, self.stderr()
        return line

    def stderr(self) -> str:
        """Its stderr, to its end (once it has ended)."""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self, signum: int) -> None:
        """Send it ``signum`` (Ctrl-C: SIGINT; a service manager: SIGTERM) and reap it."""
        self.proc.send_signal(signum)
        self.proc.wait(timeout=60)


@contextmanager
def follow_tail(*args: str, env: dict[str, str], sigint_ignored: bool = False) -> Iterator[Following]:
    """``python -m notipipe args...`` (a ``tail --follow``) with SIGINT at its default or
    (``sigint_ignored``) ignored, as a shell's foreground or background job has it; killed if the
    test left it running, its pipes closed at the end."""
    argv = with_sigint([sys.executable, "-m", "notipipe", *args], ignored=sigint_ignored)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            yield Following(proc)
        finally:
            if proc.poll() is None:
                proc.kill()


# -- the child's side -----------------------------------------------------------------------------


def say(*parts: object) -> None:
    """One line to the test, flushed at once: the test waits for these lines to act at a chosen
    moment (kill the child there, or compare what it was told with what is stored).

    Written in one piece: ``print(*parts)`` writes each part and separator on its own, and with
    ``PYTHONUNBUFFERED`` each is a write of its own, so a child killed between them left half a
    line ("committed" without its id)."""
    sys.stdout.write(" ".join(map(str, parts)) + "\n")
    sys.stdout.flush()


class Programs:
    """The programs one child module offers, by name: ``@programs`` adds a function, ``main()``
    runs the one named by the first command-line argument with the others as its arguments."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., None]] = {}

    def __call__(self, fn: Callable[..., None]) -> Callable[..., None]:
        self._by_name[fn.__name__] = fn
        return fn

    def main(self) -> None:
        self._by_name[sys.argv[1]](*sys.argv[2:])
