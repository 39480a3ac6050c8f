# Stubs for the compiled kinds twin; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_kinds_py.py, is the type truth these mirror.
from collections.abc import Callable, Iterable
from typing import Any

from notipipe._kinds import _Field

__all__ = ["install", "rows"]

def install(name: str, cls: type, fields: tuple[_Field, ...]) -> Callable[[Any, int], Any]: ...
def rows(batch: Iterable[Any]) -> list[Any]: ...
