"""Programs the fault-injection tests run in child processes: ``python -m tests._children NAME ...``.

Each prints what it has done, one line at a time and flushed, so that the test can kill it at a
chosen moment and compare what it was told with what is on disk. The twin comes from the
environment (``NOTIPIPE_NO_EXTENSIONS``), as for users.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from notipipe import DatabaseConnection, EmailMessage, SMSMessage
from tests._processes import Programs, say, wait_forked

program = Programs()


@program
def trickle(path: str, count: str, gap: str, max_delay: str) -> None:
    """Save ``count`` alerts ``gap`` seconds apart, saying when each was saved; then idle."""
    db = DatabaseConnection(path, max_delay=float(max_delay))
    for i in range(int(count)):
        db.save(SMSMessage(body=f"trickle {i}"))
        say("saved", i, time.monotonic())
        time.sleep(float(gap))
    say("done")
    time.sleep(3600)


@program
def flood(path: str, chunk: str) -> None:
    """Save chunks as fast as possible; after every 10th chunk flush and say how many are durable."""
    db = DatabaseConnection(path, batch_size=5000)
    n = 0
    size = int(chunk)
    while True:
        db.save_many([SMSMessage(body=f"flood {n + j}") for j in range(size)])
        n += size
        if n % (10 * size) == 0:
            db.flush()
            say("durable", n)


@program
def writer(path: str, seconds: str, wal_limit: str) -> None:
    """Write for ``seconds`` as fast as possible, saying the committed count twice a second."""
    db = DatabaseConnection(path, batch_size=2000, wal_limit=int(wal_limit))
    deadline = time.monotonic() + float(seconds)
    next_report = time.monotonic()
    pid = os.getpid()
    n = 0
    while time.monotonic() < deadline:
        db.save_many([SMSMessage(body=f"{pid} {n + j}") for j in range(500)])
        n += 500
        if time.monotonic() >= next_report:
            say("committed", db.durable_count, time.monotonic())
            next_report += 0.5
    db.close()
    say("closed", db.durable_count, time.monotonic())


@program
def create(directory: str, rounds: str, start_at: str) -> None:
    """Open ``rounds`` new databases, each at the same moment as the sibling processes."""
    ok = 0
    start = float(start_at)
    for r in range(int(rounds)):
        # Every process starts round r at the same wall-clock instant.
        time.sleep(max(0.0, start + r * 0.25 - time.time()))
        try:
            with DatabaseConnection(os.path.join(directory, f"r{r}.db")) as db:
                db.save(EmailMessage(body=f"{os.getpid()}"), durable=True)
            ok += 1
        except Exception as error:  # noqa: BLE001 - counted and shown to the test
            say("failed", r, repr(error))
    say("ok", ok)


@program
def after_commit_reader(path: str) -> None:
    """An after_commit observer that reads the store from the writer thread."""
    from notipipe._errors import ReentrancyError

    db = DatabaseConnection(path, deliver="after_commit", max_delay=0.01)
    seen = threading.Event()
    report: list[str] = []

    class Totals:
        def update(self, message: EmailMessage) -> None:
            totals = db.count_by_kind()
            last = db.last(1)[0]
            try:
                db.flush()
                report.append("flush returned")
            except ReentrancyError:
                report.append("flush refused")
            report.append(f"totals {totals} last_id {last.id} message_id {message.id}")
            seen.set()

    db.subscribe(Totals())
    db.save(EmailMessage(body="refresh me"))
    if not seen.wait(10):
        say("observer never ran")
        sys.exit(1)
    db.save(EmailMessage(body="and again"), durable=True)
    db.close()
    for line in report:
        say(line)


@program
def fork_busy(path: str) -> None:
    """Fork repeatedly while producer threads keep the pipeline busy; check parent and children."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: that is the test
    db = DatabaseConnection(path, max_delay=0.001, batch_size=200)
    stop = threading.Event()
    saved = [0, 0]  # one counter per producer: += on a shared one loses counts without the GIL

    def produce(slot: int) -> None:
        while not stop.is_set():
            db.save_many([SMSMessage(body="parent") for _ in range(50)])
            saved[slot] += 50

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
    for t in producers:
        t.start()
    results: list[int | str] = []
    for attempt in range(10):
        time.sleep(0.02)
        pid = os.fork()
        if pid == 0:  # the child
            if attempt % 2 == 0:
                sys.exit(0)  # does nothing with notipipe; exit-time close() must not hang
            child = DatabaseConnection()
            ok = child is db and child.path == path
            child.save_many([SMSMessage(body="child") for _ in range(10)], durable=True)
            os._exit(0 if ok else 3)
        code = wait_forked(pid, 20)
        results.append("hung" if code is None else code)
    stop.set()
    for t in producers:
        t.join()
    db.flush()
    say("children", results)
    say("parent saved", sum(saved), "stored", db.count_by_kind())
    db.close()


@program
def fork_with_locks_held(path: str) -> None:
    """Fork while other threads hold every lock notipipe has; the child must still work."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: that is the test
    db = DatabaseConnection(path)
    db.save(SMSMessage(body="parent"), durable=True)
    store = db._open()
    # The store's SQLite locks (read, open, write) are left out: the before-fork handler waits
    # for them, so that no SQLite call is in progress across the fork.
    locks: list[Any] = [store._cond, db._config_lock]
    pub_lock = getattr(db, "_lock", None)  # the pure publisher's; the compiled one is C-private
    if pub_lock is not None:
        locks.append(pub_lock)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait()
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        heard: list[str] = []

        class Dashboard:
            def update(self, message: SMSMessage) -> None:
                heard.append(message.body)

        child = DatabaseConnection()
        child.subscribe(Dashboard())
        child.save(SMSMessage(body="child"), durable=True)
        os._exit(0 if heard == ["child"] and child.count_by_kind() == {"sms": 2} else 3)
    code = wait_forked(pid, 20)
    release.set()
    holder.join()
    say("child", "hung" if code is None else code)


if __name__ == "__main__":
    program.main()
