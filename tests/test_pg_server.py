"""The suite's PostgreSQL is a real server: these fail (never skip) when there is none."""

from __future__ import annotations

import psycopg
import pytest

from tests._pg_server import PgCluster

pytestmark = pytest.mark.system


def test_the_session_server_answers_sql(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT current_database(), version()").fetchone()
    assert row is not None
    assert str(row[0]).startswith("notipipe_test_")
    assert "PostgreSQL" in str(row[1])


def test_a_private_cluster_survives_an_immediate_kill(pg_cluster: PgCluster) -> None:
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    pg_cluster.kill()
    pg_cluster.start()
    with psycopg.connect(pg_cluster.dsn) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
