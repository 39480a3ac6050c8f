"""Every PostgreSQL connection notipipe makes (the store's writer and reader, followers, durable
subscribers, their listeners) is made here, so that all of them behave alike on the network.

What the URL (or libpq's environment: ``PGCONNECT_TIMEOUT``, ``PGAPPNAME``, ``PGOPTIONS``) sets
wins; notipipe's defaults fill in only what it leaves out:

* ``connect_timeout``: an attempt gives up after this many seconds rather than libpq's "forever".
* TCP keepalives: libpq leaves the idle time to the kernel, commonly hours, so a connection whose
  server vanished without a word (a cut link, a host lost) would be waited on that long: a writer
  with a COMMIT in doubt, a follower or a durable subscriber that hears nothing. (The server
  ends such a session, and frees its locks, by its own ``tcp_keepalives_*`` settings.)
* ``application_name``: notipipe's name for the connection (``pg_stat_activity`` shows it), given
  as libpq's ``fallback_application_name``, which an ``application_name`` of the URL overrides.
* ``options``: server settings a kind of connection needs; the URL's own ``options`` come after
  them, and a later ``-c`` wins on the server.

psycopg is imported when a connection is made, not with this module (``store`` imports it only
when a PostgreSQL store is opened).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import psycopg

__all__ = ["CONNECT_DEFAULTS", "connect"]

#: Connection settings notipipe gives where the URL gives none (see the module docstring).
CONNECT_DEFAULTS: Final = (
    ("connect_timeout", 10),
    ("keepalives", 1),
    ("keepalives_idle", 30),
    ("keepalives_interval", 10),
    ("keepalives_count", 3),
)

#: libpq's environment variables for the settings above that have one.
_ENVIRONMENT: Final = {"connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS"}


def connect(url: str, application_name: str, *, options: str = "") -> psycopg.Connection[Any]:
    """An autocommit connection to ``url`` with notipipe's defaults under the URL's settings."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(url)

    def set_by_user(name: str) -> bool:
        return name in given or bool(os.environ.get(_ENVIRONMENT.get(name, "")))

    settings: dict[str, Any] = {"autocommit": True, "fallback_application_name": application_name}
    for name, value in CONNECT_DEFAULTS:
        if not set_by_user(name):
            settings[name] = value
    if options:
        theirs = given.get("options") or os.environ.get("PGOPTIONS", "")
        settings["options"] = f"{options} {theirs}".strip()
    conn: psycopg.Connection[Any] = psycopg.connect(url, **settings)
    return conn
