"""What the commands share: exit statuses, the database to open, how values are printed."""

from __future__ import annotations

import os
import sys
import sysconfig
import time
import unicodedata

from notipipe import DatabaseConnection, NotipipeError, describe_target

DEFAULT_DB = "notipipe.db"

EXIT_OK = 0
EXIT_UNUSABLE_DATABASE = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`'s yes


def db_path(arg: str | None) -> str:
    """The database a command uses: ``--db``, else ``$NOTIPIPE_DB``, else ``./notipipe.db``."""
    return arg or os.environ.get("NOTIPIPE_DB") or DEFAULT_DB


def open_existing(path: str) -> DatabaseConnection:
    """Open a database that must exist already: reading commands never create an empty file."""
    target = describe_target(path)  # a URL of a scheme no backend takes is refused here
    if not target.exists():
        raise NotipipeError(f"{path}: no such database (run `notipipe run --db {path}` first)")
    return DatabaseConnection(path)


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def ft_build() -> bool:
    """Whether this interpreter is a free-threaded build (its GIL may still be on)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def stamp(t: float) -> str:
    """A stored alert's time, local, to the millisecond."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped: an error is one line, whatever value it names."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cells(text: str) -> int:
    """The terminal columns ``text`` takes: two for a wide or full-width character (CJK, most
    emoji), none for a combining mark, one for the rest, so that columns line up under names in
    any script."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns (see ``cells``)."""
    return text + " " * max(0, width - cells(text))
