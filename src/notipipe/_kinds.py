"""Kinds beyond e-mail and SMS: what the store keeps of them and what a reader gets back.

``StoredAlert`` is what a reader gets for a stored row whose kind this process has not
registered (or can no longer read as its class): the kind's name, the common fields, and the
kind's own field values as stored. ``fields_of`` gives the kind's own fields of any message, the
one way the command line and the dashboard show an alert of any kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, final

__all__ = ["COMMON_FIELDS", "StoredAlert", "fields_of"]

#: The fields every message kind has, kept in the store's own columns.
COMMON_FIELDS: Final = frozenset({"priority", "created_at", "id"})

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})


@final
@dataclass(frozen=True, slots=True)
class StoredAlert:
    """A stored alert of a kind this process cannot build: its kind's name, the common fields,
    and the kind's own field values as stored (read-only). Readers return it instead of raising,
    so that one unknown row never stops a follower, a durable subscriber or the dashboard."""

    kind: str
    fields: Mapping[str, object] = field(default=_EMPTY)
    priority: int = field(default=3, kw_only=True)
    created_at: float = field(default=0.0, kw_only=True)
    id: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __reduce__(self) -> tuple[object, ...]:
        # A mapping proxy does not pickle; its contents do.
        return _restore, (self.kind, dict(self.fields), self.priority, self.created_at, self.id)


def _restore(kind: str, fields: dict[str, object], priority: int, created_at: float, id: int) -> StoredAlert:
    return StoredAlert(kind, fields, priority=priority, created_at=created_at, id=id)


def fields_of(message: object) -> dict[str, object]:
    """The kind's own fields of ``message`` (every field but priority, created_at and id), in
    declaration order: ``recipient``/``subject``/``body`` of an e-mail, ``phone_number``/``body``
    of an SMS, a registered kind's own fields, a ``StoredAlert``'s stored values."""
    if isinstance(message, StoredAlert):
        return dict(message.fields)
    names = getattr(message, "__match_args__", None)
    if names is None and dataclasses.is_dataclass(message):
        names = tuple(f.name for f in dataclasses.fields(message))
    return {name: getattr(message, name) for name in names or () if name not in COMMON_FIELDS}
