"""The storage backends, side by side behind one interface, and the choice between them.

``interface`` is what ``DatabaseConnection`` needs from a backend (``Storage``) and how it
configures one (``StoreOptions``); ``group_commit`` is the queue and writer thread they share
(``GroupCommitStore``); ``sqlite`` keeps the alerts in a SQLite file, ``postgresql`` in a
PostgreSQL database. psycopg is imported only when a PostgreSQL URL is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notipipe._storage.group_commit import GroupCommitStore, Row
from notipipe._storage.interface import StoreOptions
from notipipe._storage.postgresql.store import PgMessageStore, import_psycopg, is_url, redact
from notipipe._storage.sqlite.file import check_existing
from notipipe._storage.sqlite.store import MessageStore

__all__ = ["check_target", "is_url", "open_store", "shown"]


def open_store(
    path: str,
    options: StoreOptions,
    to_rows: Callable[[list[Any]], list[Row]],
    deliver_committed: Callable[[list[Any], list[int]], object],
) -> GroupCommitStore:
    """The store for ``path``: PostgreSQL for a ``postgresql://``/``postgres://`` URL, else a
    SQLite file (or ``":memory:"``). With ``deliver="after_commit"`` its writer thread calls
    ``deliver_committed`` with each committed batch and the batch's ids."""
    on_commit = deliver_committed if options.deliver == "after_commit" else None
    if is_url(path):
        return PgMessageStore(path, to_rows, options, on_commit=on_commit)
    return MessageStore(path, to_rows, options, on_commit=on_commit)


def check_target(path: str) -> None:
    """Refuse now what cannot be used: a file that is not notipipe's, a URL without psycopg."""
    if is_url(path):
        import_psycopg()
    else:
        check_existing(path)


def shown(path: str) -> str:
    """The path as it may be shown: a PostgreSQL URL without its password."""
    return redact(path) if is_url(path) else path
