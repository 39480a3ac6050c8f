"""Opening a notipipe SQLite file: refuse anything else without writing to it, create atomically.

Kept apart from the writer (``sqlite.store``) because these are the rules about *files*: what counts as
ours, how a new one comes into being when several processes race to create it, and how a
reader opens without write access.

Creation is atomic across processes: the new database is built complete (schema, application
id, WAL mode) in a private temporary file beside the target and then hard-linked into place,
which fails if another process got there first; the loser simply opens the winner's file. So
no process ever sees a half-made database, and a failed creation (a full disk, say) leaves
nothing behind.

One file, one name: SQLite keeps the -wal and -shm files beside the name a file is opened by, and
the -shm is where connections agree on what the WAL holds. A file with two names (a hard link)
gets two of each, and processes using different names overwrite each other's pages without an
error, so such a file is refused (``_check_one_name``). What cannot be seen from here: the same
file reached through two mounts (a bind mount, one network share mounted twice) has one link
and looks like two files; a symbolic link is safe (SQLite follows it to the real name).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shlex
import sqlite3
import stat
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

from notipipe._errors import StorageError
from notipipe._storage.interface import StoreOptions, Synchronous

__all__ = [
    "APPLICATION_ID",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Migrated",
    "check_existing",
    "describe",
    "migrate",
    "open_reader",
    "open_writer",
    "validate_path",
]

#: Bumped whenever the table layout changes; a newer file is refused, never rewritten. A writer
#: migrates an older one in place (``migrate``); a reader reads it as it is.
#: 1: ids were SQLite's plain rowids (the highest stored id + 1: reused once the newest rows are
#: deleted). 2: ids are AUTOINCREMENT: never reused, whatever is deleted.
SCHEMA_VERSION: Final = 2
_log = logging.getLogger("notipipe")

#: "NTPP": marks a SQLite file as a notipipe database (PRAGMA application_id).
APPLICATION_ID: Final = 0x4E545050
#: The first 16 bytes of every SQLite 3 database file.
_MAGIC: Final = b"SQLite format 3\x00"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- in save order, never reused
    kind       TEXT    NOT NULL,     -- 'email' | 'sms'
    created_at REAL    NOT NULL,     -- Unix seconds
    priority   INTEGER NOT NULL,
    address    TEXT    NOT NULL,     -- e-mail recipient or E.164 phone number
    subject    TEXT    NOT NULL,     -- '' for SMS
    body       TEXT    NOT NULL
);
"""


def describe(error: BaseException) -> str:
    """The reason SQLite gave, e.g. "database or disk is full"."""
    return str(error) or type(error).__name__


def validate_path(path: str) -> bytes:
    """Refuse a path the file system cannot name, before anything touches the disk.

    Returns the path as the bytes the OS uses (so a name that is not UTF-8 still works).
    """
    if "\x00" in path:
        raise StorageError(path.replace("\x00", "\\x00"), "a path cannot contain a NUL character")
    try:
        return os.fsencode(path)
    except UnicodeEncodeError:
        raise StorageError(
            path.encode("utf-8", "backslashreplace").decode("ascii"),
            "the path is not valid text for this file system (a lone surrogate?)",
        ) from None


def _precheck(path: str, *, for_writing: bool) -> bool:
    """Checks that need no SQLite: return True if the file exists."""
    validate_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path) or "."
        if not os.path.isdir(parent):
            raise StorageError(path, f"directory {parent} does not exist") from None
        if for_writing and not os.access(parent, os.W_OK):
            raise StorageError(path, f"directory {parent} is not writable") from None
        return False
    except OSError as error:
        raise StorageError(path, error.strerror or str(error)) from None
    if stat.S_ISDIR(st.st_mode):
        raise StorageError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(path, "is not a regular file")
    _check_one_name(path, st)
    if for_writing and not os.access(path, os.W_OK):
        raise StorageError(path, "is not writable")
    if st.st_size:
        _check_file_header(path)
    return True


def _check_one_name(path: str, st: os.stat_result) -> None:
    """Refuse a file with more than one name (hard link): see the module's docstring.

    SQLite notices too, but only says "multiple links to file" to its error log, which Python
    does not show, and goes on. A creator's temporary name (``_create``) is no second name:
    nobody opens the file by it, and the creator removes it as soon as the link is made.
    """
    if st.st_nlink <= 1:
        return
    temporary = _temporary_names(path, st)
    # Counted again after the scan: a creator may have removed its temporary name in between,
    # and the file is then not refused for a name it no longer has.
    with contextlib.suppress(OSError):
        st = os.stat(path)
    names = st.st_nlink - temporary
    if names <= 1:
        return
    raise StorageError(
        path,
        f"has {names} names (hard links): SQLite keeps the -wal and -shm files beside each name, so"
        " processes using different names would overwrite each other's alerts; keep one name and"
        f" delete the others (find {shlex.quote(_mount_point(path, st))} -xdev -samefile"
        f" {shlex.quote(path)} lists them), or give each process a copy of its own",
    )


def _temporary_names(path: str, st: os.stat_result) -> int:
    """How many of ``path``'s links are a creator's temporary names for it (``_create``)."""
    directory, base = os.path.split(path)
    found = 0
    with contextlib.suppress(OSError), os.scandir(directory or ".") as entries:
        for entry in entries:
            if entry.name.startswith(f".{base}.") and entry.name.endswith(".new"):
                with contextlib.suppress(OSError):
                    other = entry.stat(follow_symlinks=False)
                    found += (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
    return found


def _mount_point(path: str, st: os.stat_result) -> str:
    """The top directory of the file system holding ``path`` (where its other names can be)."""
    here = os.path.dirname(os.path.abspath(path))
    while (parent := os.path.dirname(here)) != here:
        try:
            if os.stat(parent).st_dev != st.st_dev:
                break
        except OSError:
            break
        here = parent
    return here


def _check_file_header(path: str) -> None:
    """Check the 100-byte SQLite header itself: magic, application id, schema version.

    Read as plain bytes, so that refusing a file never creates a -wal, -shm or -journal file
    beside it (opening it in SQLite could).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as error:
        raise StorageError(path, error.strerror or str(error)) from None
    if not head.startswith(_MAGIC):
        raise StorageError(path, "not a SQLite database (the file does not start with its header)")
    if len(head) < 100:
        raise StorageError(path, "not a SQLite database (its header is cut short)")
    version = int.from_bytes(head[60:64], "big", signed=True)
    app_id = int.from_bytes(head[68:72], "big", signed=True)
    _check_header(path, app_id, version)


def _uri(path: str, mode: str) -> str:
    return "file:" + urllib.parse.quote(os.fsencode(path)) + f"?mode={mode}"


def _connect(path: str, mode: str, busy_timeout: float) -> sqlite3.Connection:
    try:
        return sqlite3.connect(
            _uri(path, mode),
            uri=True,
            timeout=busy_timeout,
            check_same_thread=False,
            isolation_level=None,
        )
    except sqlite3.Error as error:
        raise StorageError(path, describe(error)) from None


def _header(conn: sqlite3.Connection, path: str) -> tuple[int, int]:
    """(application_id, user_version), as SQLite sees them (the WAL included), in one snapshot."""
    try:
        row = conn.execute(
            "SELECT a.application_id, v.user_version"
            " FROM pragma_application_id AS a, pragma_user_version AS v"
        ).fetchone()
    except sqlite3.OperationalError as error:  # locked, I/O error
        raise StorageError(path, describe(error)) from None
    except sqlite3.DatabaseError as error:  # "file is not a database", "malformed"
        raise StorageError(path, f"not a SQLite database ({describe(error)})") from None
    return int(row[0]), int(row[1])


def _check_header(path: str, app_id: int, version: int) -> None:
    if app_id != APPLICATION_ID:
        raise StorageError(path, f"a SQLite database, but not notipipe's (application_id {app_id:#x})")
    if version > SCHEMA_VERSION:
        raise StorageError(
            path, f"schema version {version} is newer than this notipipe reads ({SCHEMA_VERSION})"
        )
    if version < 1:
        raise StorageError(path, f"unknown schema version {version}")


def check_existing(path: str) -> bool:
    """Refuse (StorageError) a file that is not a usable notipipe database; write nothing.

    Returns False if there is no file yet (it will be created on first write).
    """
    return path == ":memory:" or _precheck(path, for_writing=False)


def open_reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection to an existing notipipe file (no write access needed).

    On a read-only file system SQLite cannot make the shared-memory file a WAL database needs;
    there nobody can write, so the file is opened as immutable instead.

    A file of an older layout is read as it is: only a writer migrates it.
    """
    try:
        _check_one_name(path, os.stat(path))
    except OSError as error:
        raise StorageError(path, error.strerror or str(error)) from None
    _check_file_header(path)
    mode = "ro"
    if _on_read_only_file_system(path):
        if os.path.exists(path + "-wal") and os.path.getsize(path + "-wal") > 0:
            # Immutable would ignore the WAL, and with it alerts committed there: refuse.
            raise StorageError(
                path,
                "is on a read-only file system with committed changes still in its -wal file;"
                " reading them needs a writable -shm file (open it once where it is writable)",
            )
        mode = "ro&immutable=1"
    conn = _connect(path, mode, busy_timeout)
    try:
        _check_header(path, *_header(conn, path))
    except BaseException:
        conn.close()
        raise
    return conn


def _on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the plain read-only mode
        return False


def open_writer(path: str, options: StoreOptions) -> tuple[sqlite3.Connection, int]:
    """Open the notipipe database at ``path`` for writing, creating it (atomically) if needed;
    return the connection and the file's layout version.

    A file of an older layout is not migrated here, only checked to be one ``migrate`` can
    bring up to date: the migration takes the write lock, and waiting for a lock someone else
    holds is the writer thread's business (with backoff, for as long as it takes), not the
    caller's (a producer's first ``put``).
    """
    if path == ":memory:":
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        _initialise(conn)
        return conn, SCHEMA_VERSION
    deadline = time.monotonic() + options.busy_timeout
    while True:
        if not _precheck(path, for_writing=True):
            _create(path)
        elif os.path.getsize(path) == 0:
            try:
                _initialise_in_place(path)
            except sqlite3.Error as error:
                raise StorageError(path, f"cannot create the database: {describe(error)}") from None
        conn = _connect(path, "rw", options.busy_timeout)
        try:
            app_id, version = _header(conn, path)
            _check_header(path, app_id, version)
            _set_pragmas(conn, path, options.synchronous, options.wal_limit)
            if version < SCHEMA_VERSION:
                _check_migratable(conn, path, version)
        except StorageError as error:
            conn.close()
            # A creator's link appears with its content, so a race leaves nothing to retry but
            # a lock; anything else is a real refusal.
            if "locked" in error.reason and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            raise
        except BaseException:
            conn.close()
            raise
        return conn, version


@dataclass(frozen=True, slots=True)
class Migrated:
    """What ``migrate`` did: the file, the layout it found and the rows it kept."""

    path: str
    version: int
    rows: int

    def log(self) -> None:
        """Say so (call it with no lock held: logging handlers are the application's code)."""
        _log.warning(
            "notipipe: %s: migrated the file from layout %d to layout %d (ids never reused once"
            " deleted), %d rows kept; older notipipe releases refuse the file from now on",
            self.path,
            self.version,
            SCHEMA_VERSION,
            self.rows,
        )


#: Layout 1's table as SQLite keeps its text, and where AUTOINCREMENT goes in it.
_V1_TABLE: Final = re.compile(
    r"\ACREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:messages|\"messages\")\s*\(", re.I
)
_V1_ID: Final = re.compile(r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b(?!\s+AUTOINCREMENT)", re.I)
#: The rebuilt table's name until it replaces the old one (inside the migration's transaction).
_REBUILT: Final = "notipipe_migrating_messages"


def migrate(conn: sqlite3.Connection, path: str) -> Migrated | None:
    """Bring a file of layout 1 to the current layout, in place; None if another process did.

    Layout 2 makes ids AUTOINCREMENT, which SQLite cannot add to a table: the table is rebuilt
    (SQLite's documented way, with ``legacy_alter_table`` so that the views, triggers of other
    tables, and the rename leave each other alone) under the same definition plus AUTOINCREMENT,
    its rows copied with their ids, the indexes and triggers others added on it made again. All
    in one write transaction: readers go on reading the old table until it commits, writers
    (other processes, the previous release) wait, a crash or a full disk leaves layout 1 whole,
    and a process that waited for the lock finds the work done and does nothing. The ids the
    newest rows had, if they were deleted before this ran, are not known to anyone: ids go on
    from the highest one still stored.

    SQLite's errors (a lock someone else holds, a full disk) are raised as they are, for the
    writer thread to wait out or retry like those of any batch; a table that is not notipipe's
    raises ``StorageError``.
    """
    conn.execute("PRAGMA legacy_alter_table=ON")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrated = _rebuild(conn, path)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA legacy_alter_table=OFF")
    return migrated


def _rebuild(conn: sqlite3.Connection, path: str) -> Migrated | None:
    """The migration's work, inside its transaction."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version >= SCHEMA_VERSION:
        return None  # another process migrated it while this one waited for the lock
    rebuilt = _rebuilt_table(conn, path, version)
    others = conn.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'messages' AND type IN ('index', 'trigger')"
        " AND sql IS NOT NULL"
    ).fetchall()
    conn.execute(rebuilt)
    rows = conn.execute(f"INSERT INTO {_REBUILT} SELECT * FROM messages").rowcount
    conn.execute("DROP TABLE messages")
    conn.execute(f"ALTER TABLE {_REBUILT} RENAME TO messages")
    for (sql,) in others:
        conn.execute(sql)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return Migrated(path, version, rows)


def _check_migratable(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Refuse now (StorageError) a table the writer thread could not migrate later."""
    try:
        _rebuilt_table(conn, path, version)
    except sqlite3.Error as error:
        raise StorageError(path, describe(error)) from None


def _rebuilt_table(conn: sqlite3.Connection, path: str, version: int) -> str:
    """The CREATE TABLE of the migrated table, or StorageError if the table is not notipipe's."""
    got = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'").fetchone()
    table = "" if got is None or got[0] is None else str(got[0])
    renamed, named = _V1_TABLE.subn(f"CREATE TABLE {_REBUILT} (", table, count=1)
    rebuilt, ided = _V1_ID.subn("id INTEGER PRIMARY KEY AUTOINCREMENT", renamed, count=1)
    if not (named and ided):
        raise StorageError(
            path,
            f"cannot migrate the file to layout {SCHEMA_VERSION}: its messages table is not notipipe's"
            f" layout {version} (changed by another tool?): {table!r}",
        )
    return rebuilt


def _set_pragmas(conn: sqlite3.Connection, path: str, synchronous: Synchronous, wal_limit: int) -> None:
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(path, f"cannot use WAL mode (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA journal_size_limit={wal_limit}")
    except sqlite3.Error as error:
        raise StorageError(path, describe(error)) from None


def _initialise(conn: sqlite3.Connection) -> None:
    conn.executescript(
        f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id={APPLICATION_ID};"
        f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
    )


def _create(path: str) -> None:
    """Build a complete database in a temporary file, then link it into place.

    ``os.link`` fails if ``path`` exists, so of several processes creating at once exactly one
    wins and the others open its (complete) file. On a file system without hard links the name
    is claimed with an exclusive create and filled in place (``_initialise_in_place``).
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            _initialise(conn)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            _initialise_in_place(path)
    except sqlite3.Error as error:
        raise StorageError(path, f"cannot create the database: {describe(error)}") from None
    except OSError as error:
        raise StorageError(path, f"cannot create the database: {error.strerror or error}") from None
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _initialise_in_place(path: str) -> None:
    """Make an empty file a notipipe database, in one write transaction.

    SQLite's own lock serialises processes doing this at once; whoever comes second finds the
    schema made and leaves it alone.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        empty = conn.execute(
            "SELECT a.application_id = 0 AND (SELECT count(*) FROM sqlite_master) = 0"
            " FROM pragma_application_id AS a"
        ).fetchone()[0]
        if empty:
            for statement in (
                SCHEMA,
                f"PRAGMA application_id={APPLICATION_ID}",
                f"PRAGMA user_version={SCHEMA_VERSION}",
            ):
                conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()
