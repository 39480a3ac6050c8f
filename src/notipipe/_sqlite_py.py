"""The SQLite store's row writer: the pure twin (the type truth) of ``_sqlite_c.pyx``.

``Inserter.insert`` writes a batch as multi-row INSERT statements on the store's stdlib
connection, inside the transaction its caller began, and returns the rowids. A batch item is a
message of exactly the e-mail or SMS class (its row is read from its fields: what its ``_row()``
gives) or a row tuple already built. The compiled twin binds the same values through SQLite's C
API on the same connection, with no row tuple and no parameter list, and hands any value or
statement it does not expect to the stdlib exactly as this twin does (same errors).
"""

from __future__ import annotations

import functools
import sqlite3

__all__ = ["Inserter", "insert_sql"]


@functools.cache
def insert_sql(rows: int) -> str:
    """One INSERT of ``rows`` rows: a multi-row VALUES list.

    Why not ``executemany``: the sqlite3 module releases the GIL around every row's step, and on a
    GIL build each re-acquisition waits out the switch interval whenever another thread is busy
    (a producer, say); one statement of many rows pays that once.
    """
    return "INSERT INTO messages (kind, created_at, priority, address, subject, body) VALUES " + ",".join(
        ["(?,?,?,?,?,?)"] * rows
    )


def statement_sizes(count: int, per_statement: int) -> list[int]:
    """Rows of each statement for ``count`` rows: full statements, then the remainder in powers
    of two (a handful of distinct SQL texts, so the prepared statements stay few)."""
    sizes: list[int] = []
    while count > 0:
        n = per_statement if count >= per_statement else 1 << (count.bit_length() - 1)
        sizes.append(n)
        count -= n
    return sizes


def parameters(items: list[object], email_cls: type, sms_cls: type) -> list[object]:
    """The flat parameters of ``items``' rows, in order."""
    params: list[object] = []
    for m in items:
        cls = type(m)
        if cls is email_cls:
            params += ("email", m.created_at, m.priority, m.recipient, m.subject, m.body)  # type: ignore[attr-defined]
        elif cls is sms_cls:
            params += ("sms", m.created_at, m.priority, m.phone_number, "", m.body)  # type: ignore[attr-defined]
        else:
            params += m  # type: ignore[arg-type]
    return params


class Inserter:
    """Writes batches on ``conn`` (the store's writing connection, used under its write lock) in
    statements of at most ``per_statement`` rows."""

    __slots__ = ("_conn", "_email", "_per_statement", "_sms")

    def __init__(self, conn: sqlite3.Connection, per_statement: int, email_cls: type, sms_cls: type) -> None:
        if per_statement < 1:
            raise ValueError(f"per_statement must be >= 1, got {per_statement}")
        self._conn: sqlite3.Connection | None = conn
        self._per_statement = per_statement
        self._email = email_cls
        self._sms = sms_cls

    @property
    def compiled(self) -> bool:
        """Whether values are bound through SQLite's C API (the compiled twin, where it can)."""
        return False

    def insert(self, items: list[object]) -> list[int]:
        """Insert ``items``' rows in the caller's transaction; their rowids, in order.

        Raises what the stdlib's ``execute`` raises for a statement SQLite refuses (the rows of
        the statements before it are inserted), or what reading a message's fields raises.
        """
        conn = self._open()
        ids: list[int] = []
        i = 0
        for n in statement_sizes(len(items), self._per_statement):
            params = parameters(items[i : i + n], self._email, self._sms)
            last = int(conn.execute(insert_sql(n), params).lastrowid or 0)
            # Rows of one statement, in one write transaction, get consecutive rowids.
            ids.extend(range(last - n + 1, last + 1))
            i += n
        return ids

    def close(self) -> None:
        """Let go of the connection (idempotent); the store closes it."""
        self._conn = None

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed inserter.")
        return self._conn
