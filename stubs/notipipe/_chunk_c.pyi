# Stubs for the compiled chunk codec; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_chunk_py.py, is the type truth these mirror.
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = ["MAGIC", "VERSION", "decode_chunk", "decode_messages", "encode_chunk", "encode_messages"]

type _Row = tuple[str, float, int, str, str, str]

MAGIC: Final[bytes]
VERSION: Final[int]

def encode_chunk(rows: Iterable[_Row]) -> bytes: ...
def encode_messages(
    messages: Iterable[object],
    email_cls: type,
    sms_cls: type,
    to_rows: Callable[[list[Any]], Iterable[_Row]],
) -> bytes: ...
def decode_chunk(data: bytes) -> list[_Row]: ...
def decode_messages[E, S, O](
    data: bytes,
    base_id: int,
    email_cls: Callable[..., E],
    sms_cls: Callable[..., S],
    other: Callable[[tuple[object, ...]], O] | None = None,
) -> list[E | S | O]: ...
