"""Helpers shared by the PostgreSQL tests: the URL notipipe takes for a fixture's DSN, and
reading the database straight through psycopg, beside notipipe."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests._processes import wait_until

__all__ = ["as_url", "exactly_once", "query", "until"]


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


def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition another process or the server brings about (nothing to wait on)."""
    if not wait_until(condition, timeout):
        raise AssertionError(f"timed out waiting for {what}")


def exactly_once(dsn: str, bodies: list[str]) -> None:
    """Every body stored exactly once, in save order (one writer)."""
    stored = [b for (b,) in query(dsn, "SELECT body FROM notipipe_messages ORDER BY id")]
    assert len(stored) == len(bodies), f"{len(stored)} rows for {len(bodies)} alerts"
    assert len(set(stored)) == len(stored), "an alert was stored twice"
    assert stored == bodies
