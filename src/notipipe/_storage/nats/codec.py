"""The chunk codec the NATS store uses: the compiled twin (``_chunk_c``) where the extensions are
built and allowed, the pure one (``_chunk_py``) otherwise (``_select.twin``). Both write and
read the same bytes (see ``_chunk_py`` for the layout)."""

from __future__ import annotations

from types import ModuleType

from notipipe import _chunk_py
from notipipe._select import twin

__all__ = ["CODEC", "codec"]


def codec(name: str | None = None) -> ModuleType:
    """The codec twin ``name`` ("c" or "py"); by default the one this process selects."""
    return twin(_chunk_py, name)


#: The codec of this process.
CODEC = codec()
