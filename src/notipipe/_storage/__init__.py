"""The storage backends, side by side behind one interface, and the registry that chooses.

``backend`` is what a backend is to the rest of notipipe (``Backend``); ``interface`` how a store
is configured (``StoreOptions``) and read (``Storage``); ``group_commit`` the queue and writer
thread the stores share (``GroupCommitStore``). Each backend is a folder with a ``BACKEND``
object: ``sqlite`` (a file, or ``":memory:"``), ``postgresql`` (a ``postgresql://`` URL), ``nats``
(a ``nats://host:port/STREAM`` URL: a JetStream stream). A
backend's driver is imported only when a target of the backend is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from notipipe._errors import ConfigurationError
from notipipe._storage.nats.backend import BACKEND as _NATS
from notipipe._storage.postgresql.backend import BACKEND as _POSTGRESQL
from notipipe._storage.sqlite.backend import BACKEND as _SQLITE
from notipipe._storage.urls import redact, scheme_of

if TYPE_CHECKING:
    from notipipe._storage.backend import Backend

__all__ = ["BACKENDS", "backend_for", "durable_targets", "known_targets"]

#: Every backend, asked in this order: the URL backends first, the file backend last (it takes
#: any target that is no URL). A new backend is one more entry here.
BACKENDS: tuple[Backend, ...] = (_POSTGRESQL, _NATS, _SQLITE)

#: How the file backend is named among the schemes.
_FILE: Final = "a SQLite file path"
#: Schemes other tools give SQLite files by.
_FILE_SCHEMES: Final = frozenset({"sqlite", "sqlite3", "file"})


def backend_for(target: str) -> Backend:
    """The backend of ``target``; ``ConfigurationError`` for a URL of a scheme none takes."""
    scheme = scheme_of(target)
    for backend in BACKENDS:
        takes = scheme in backend.schemes if scheme is not None else not backend.schemes
        if takes and backend.claims(target):
            return backend
    shown = redact(target) if scheme is not None else target
    # "sqlite:///x.db" is SQLAlchemy's spelling; a SQLite file is given here as its path.
    note = " (a SQLite file is given as a plain path)" if scheme in _FILE_SCHEMES else ""
    raise ConfigurationError(f"{shown}: no backend for the scheme {scheme!r}{note}; known: {known_targets()}")


def known_targets() -> str:
    """The targets the backends take, for messages and ``--help``: ``postgresql://, ..., or a
    SQLite file path``."""
    schemes = [f"{s}://" for b in BACKENDS for s in b.schemes]
    files = [_FILE for b in BACKENDS if not b.schemes]
    return ", ".join(schemes) + (f", or {files[0]}" if files else "")


def durable_targets() -> str:
    """The targets of the backends that keep durable names: ``postgresql://, ..., nats://``."""
    return ", ".join(f"{s}://" for b in BACKENDS if b.keeps_durable_names for s in b.schemes)
