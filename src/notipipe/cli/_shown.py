"""What the commands and the dashboard show of an alert of any kind.

E-mail and SMS keep their familiar layout; any other kind (a registered one, or a
``StoredAlert`` whose kind this process has not registered) is shown by its name and its own
fields (``notipipe.fields_of``), without the command knowing the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

__all__ = ["FAMILIAR", "Shown", "familiar", "field_pairs", "label"]

#: The built-in kinds' familiar layout: the field shown as "to", the field shown as its text.
#: Chosen by the kind's name and fields, not by class: either twin's messages look alike.
FAMILIAR: Final[Mapping[str, tuple[str, str]]] = {
    "email": ("recipient", "subject"),
    "sms": ("phone_number", "body"),
}


class Shown(Protocol):
    """What every stored alert has, whatever its kind: ``EmailMessage``, ``SMSMessage``, a
    registered kind's class, ``StoredAlert``."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_at(self) -> float: ...


def label(name: str) -> str:
    """A kind's or field's name as one line shows it: as it is when it is a plain name, else
    quoted and escaped (a stored name may hold a line break or a terminal's escape sequence)."""
    return name if name.isidentifier() and name.isascii() else repr(name)


def familiar(kind: str, fields: Mapping[str, object]) -> tuple[str, str, object] | None:
    """A built-in kind's "to" value, and its text field's name and value; None for any other
    kind (shown by all its fields)."""
    names = FAMILIAR.get(kind)
    if names is None or not all(name in fields for name in names):
        return None
    to, text = names
    return str(fields[to]), text, fields[text]


def field_pairs(fields: Mapping[str, object]) -> list[str]:
    """``name='value'`` for each of a kind's own fields, in declaration order."""
    return [f"{label(name)}={value!r}" for name, value in fields.items()]
