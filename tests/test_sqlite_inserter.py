"""The SQLite store's row writer twins (``_sqlite_c``, ``_sqlite_py``): the same rows, rowids and
errors from the same batch, whether the values are bound through SQLite's C API or the stdlib."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notipipe._storage.sqlite.file import SCHEMA
from notipipe._storage.sqlite.store import inserter_twin
from notipipe._twins import available
from tests.conftest import Impl

pytestmark = [
    pytest.mark.twin,
    # Each test drives one SQLite connection of its own to its end (a full disk, a refused
    # statement): copies in threads of one process share the inserter's module state and the
    # garbage a failed copy leaves, so the parallel leg runs them one at a time.
    pytest.mark.thread_unsafe(reason="one connection per test, driven to a failure"),
]


class _Text(str):
    __slots__ = ()


_value = st.one_of(
    st.text(max_size=12),  # lone surrogates too: not UTF-8, the stdlib's error
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**64), max_value=2**64),  # past 64 bits: the stdlib's error
    st.none(),
    st.booleans(),
    st.binary(max_size=4),
    st.builds(_Text, st.text(st.characters(blacklist_categories=["Cs"]), max_size=4)),
)
_row = st.tuples(_value, _value, _value, _value, _value, _value)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript(SCHEMA)
    return conn


def _outcome(twin: ModuleType, path: Path, items: list[Any], per_statement: int, impl: Impl) -> Any:
    """What inserting ``items`` gives: the rowids or the error, and the table afterwards."""
    conn = _connect(path)
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS unique_body ON messages(body) WHERE kind = 'unique'")
    inserter = twin.Inserter(conn, per_statement, impl.EmailMessage, impl.SMSMessage)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result: Any = inserter.insert(items)
        except Exception as error:  # noqa: BLE001 - compared between the twins
            result = (type(error), str(error), getattr(error, "sqlite_errorcode", None))
        in_transaction = conn.in_transaction
        if in_transaction:
            conn.execute("COMMIT")
        rows = conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
    finally:
        inserter.close()
        conn.close()
    return result, in_transaction, rows


def _messages(impl: Impl, n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        if i % 3:
            out.append(impl.SMSMessage(phone_number="+15550001000", body=f"cpu {i}% on hôst-{i}"))
        else:
            out.append(impl.EmailMessage(recipient="ops@example.com", subject=f"s{i}", body=f"b {i}\0"))
    return out


@pytest.fixture
def fresh(tmp_path: Path) -> Any:
    def path(name: str) -> Path:
        p = tmp_path / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{p}{suffix}").unlink(missing_ok=True)
        return p

    return path


@pytest.mark.parametrize("name", available())
def test_the_compiled_twin_binds_through_sqlite_itself(name: str, impl: Impl, tmp_path: Path) -> None:
    conn = _connect(tmp_path / "x.db")
    inserter = inserter_twin(name).Inserter(conn, 8, impl.EmailMessage, impl.SMSMessage)
    try:
        assert inserter.compiled is (name == "c")
    finally:
        inserter.close()
        conn.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_twins_store_the_same_rows_and_raise_the_same_errors(impl: Impl, fresh: Any, data: Any) -> None:
    items: list[Any] = data.draw(
        st.lists(st.one_of(_row, st.sampled_from(_messages(impl, 6))), max_size=40), label="items"
    )
    per_statement = data.draw(st.integers(min_value=1, max_value=16), label="per_statement")
    outcomes = [
        _outcome(inserter_twin(name), fresh(f"{name}.db"), items, per_statement, impl) for name in available()
    ]
    assert all(o == outcomes[0] for o in outcomes)


def test_a_refused_statement_raises_the_stdlibs_error_and_keeps_the_rows_before(
    impl: Impl, fresh: Any
) -> None:
    rows: list[Any] = [("unique", 1.0, 1, "", "", "a"), *_messages(impl, 9), ("unique", 2.0, 1, "", "", "a")]
    outcomes = [_outcome(inserter_twin(name), fresh(f"{name}.db"), rows, 4, impl) for name in available()]
    result, in_transaction, stored = outcomes[0]
    assert result == (sqlite3.IntegrityError, "UNIQUE constraint failed: messages.body", 2067)
    assert in_transaction
    assert len(stored) == 10  # the statements before the refused one (4 + 4 + 2 rows)
    assert all(o == outcomes[0] for o in outcomes)


def test_a_failure_that_ends_the_transaction_is_raised_as_the_stdlib_raises_it(
    impl: Impl, fresh: Any
) -> None:
    def full(name: str) -> Any:
        conn = _connect(fresh(f"{name}.db"))
        conn.execute("PRAGMA max_page_count=" + str(conn.execute("PRAGMA page_count").fetchone()[0] + 2))
        # Rows a statement each: SQLite then ends the transaction on the row that does not fit
        # (the compiled twin cannot hand that statement to the stdlib: it would commit alone).
        inserter = inserter_twin(name).Inserter(conn, 1, impl.EmailMessage, impl.SMSMessage)
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserter.insert([("sms", 1.0, 1, "+1555", "", "x" * 2000)] * 200)
        except sqlite3.Error as error:
            return (
                type(error),
                str(error),
                error.sqlite_errorcode,
                error.sqlite_errorname,
                conn.in_transaction,
            )
        finally:
            inserter.close()
            conn.close()
        raise AssertionError("the database took more pages than it may have")

    outcomes = [full(name) for name in available()]
    assert outcomes[0][:3] == (sqlite3.OperationalError, "database or disk is full", sqlite3.SQLITE_FULL)
    assert outcomes[0][4] is False
    assert all(o == outcomes[0] for o in outcomes)


@pytest.mark.parametrize("name", available())
def test_a_closed_inserter_refuses_to_write(name: str, impl: Impl, tmp_path: Path) -> None:
    conn = _connect(tmp_path / "x.db")
    inserter = inserter_twin(name).Inserter(conn, 8, impl.EmailMessage, impl.SMSMessage)
    inserter.close()
    inserter.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed inserter"):
        inserter.insert([])
    conn.close()


@pytest.mark.parametrize("name", available())
def test_outside_a_transaction_each_statement_commits_as_the_stdlibs_would(
    name: str, impl: Impl, tmp_path: Path
) -> None:
    # The compiled twin binds through SQLite only inside the caller's transaction; outside it,
    # and on a connection closed under it, it is the stdlib's path, with the stdlib's errors.
    conn = _connect(tmp_path / "x.db")
    inserter = inserter_twin(name).Inserter(conn, 8, impl.EmailMessage, impl.SMSMessage)
    assert inserter.insert(_messages(impl, 3)) == [1, 2, 3]
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        inserter.insert(_messages(impl, 1))
    inserter.close()


def test_the_store_writes_through_the_twin_the_package_selected() -> None:
    import notipipe
    from notipipe._storage.sqlite.store import INSERTER

    assert INSERTER.__name__ == ("notipipe._sqlite_c" if notipipe.COMPILED else "notipipe._sqlite_py")
