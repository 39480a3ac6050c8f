"""The COPY packer the PostgreSQL writer uses: the compiled twin (``_copy_c``) where the
extensions are built and allowed, the pure one (``_copy_py``) otherwise (``_select.twin``). Both
write the same bytes (see ``_copy_py`` for the format)."""

from __future__ import annotations

from types import ModuleType

from notipipe import _copy_py
from notipipe._select import twin

__all__ = ["PACKER", "PACKER_COMPILED", "packer"]


def packer(name: str | None = None) -> ModuleType:
    """The packer twin ``name`` ("c" or "py"); by default the one this process selects."""
    return twin(_copy_py, name)


#: The packer of this process.
PACKER = packer()
#: Whether it is the compiled one (which packs faster than psycopg's C build formats rows).
PACKER_COMPILED = PACKER is not _copy_py
