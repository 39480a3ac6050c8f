"""Helpers shared by the PostgreSQL tests: the URL notipipe takes for a fixture's DSN, and
reading the database straight through psycopg, beside notipipe."""

from __future__ import annotations

import urllib.parse
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

__all__ = ["as_url", "query"]


def as_url(dsn: str) -> str:
    """A ``postgresql://`` URL for a libpq DSN (the fixtures give key=value strings)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = urllib.parse.quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    userinfo = user + (":" + urllib.parse.quote(password, safe="") if password is not None else "")
    dbname = urllib.parse.quote(params.pop("dbname", ""), safe="")
    options = urllib.parse.urlencode(params, safe="/")
    return f"postgresql://{userinfo}{'@' if userinfo else ''}/{dbname}{'?' + options if options else ''}"


def query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (autocommit); its rows, ``[]`` if it has none."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []
