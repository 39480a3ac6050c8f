# Stubs for the compiled SQLite row writer; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_sqlite_py.py, is the type truth these mirror.
import sqlite3

from typing_extensions import disjoint_base

__all__ = ["Inserter", "insert_sql"]

def insert_sql(rows: int) -> str: ...

@disjoint_base
class Inserter:
    def __init__(
        self, conn: sqlite3.Connection, per_statement: int, email_cls: type, sms_cls: type
    ) -> None: ...
    @property
    def compiled(self) -> bool: ...
    def insert(self, items: list[object]) -> list[int]: ...
    def close(self) -> None: ...
