# Stubs for the compiled COPY packer; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_copy_py.py, is the type truth these mirror.
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["COPY_HEADER", "COPY_TRAILER", "pack_rows"]

COPY_HEADER: Final[bytes]
COPY_TRAILER: Final[bytes]

def pack_rows(
    ids: Sequence[int] | None, rows: Sequence[tuple[Any, ...] | None], host: str, pid: int
) -> bytes: ...
