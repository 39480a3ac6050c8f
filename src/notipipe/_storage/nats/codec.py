"""The chunk codec the NATS store uses: the compiled twin (``_chunk_c``) where the extensions are
built and allowed, the pure one (``_chunk_py``) otherwise, chosen as ``_select`` chooses the
message twins. Both write and read the same bytes (see ``_chunk_py`` for the layout)."""

from __future__ import annotations

from types import ModuleType

from notipipe import _chunk_py
from notipipe._select import NO_EXTENSIONS

__all__ = ["CODEC", "codec"]


def codec(name: str | None = None) -> ModuleType:
    """The codec twin ``name`` ("c" or "py"); by default the one this process selects."""
    if name == "py" or (name is None and NO_EXTENSIONS):
        return _chunk_py
    try:
        from notipipe import _chunk_c
    except ImportError:
        if name == "c":
            raise
        return _chunk_py
    return _chunk_c


#: The codec of this process.
CODEC = codec()
