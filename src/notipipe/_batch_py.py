"""What a producer's batch is checked for before it is queued: the pure twin (the type truth) of
``_batch_c.pyx``."""

from __future__ import annotations

from typing import Any

__all__ = ["all_of_types"]


def all_of_types(items: list[Any], types: frozenset[type]) -> bool:
    """Whether every item's type is one of ``types`` (its exact type: a subclass is not).
    ``TypeError`` unless ``items`` is a list and ``types`` a frozenset."""
    if type(items) is not list:
        raise TypeError(f"items must be a list, got {type(items).__name__}")
    if type(types) is not frozenset:
        raise TypeError(f"types must be a frozenset, got {type(types).__name__}")
    return types.issuperset(map(type, items))
