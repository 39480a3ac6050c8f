# Stubs for the compiled batch checks; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_batch_py.py, is the type truth these mirror.
from typing import Any

__all__ = ["all_of_types"]

def all_of_types(items: list[Any], types: frozenset[type]) -> bool: ...
