"""mypy and pyright must reject each marked line: register takes a class with the common fields
of their types (that it is a frozen, slotted dataclass is checked at run time), create a message
class."""

from dataclasses import dataclass

from notipipe import MessageFactory


@dataclass(frozen=True, slots=True)
class PriorityAsText:
    priority: str = "high"
    created_at: float = 0.0
    id: int = 0


@dataclass(frozen=True, slots=True)
class NoCommonFields:
    device: str


MessageFactory.register("a")(PriorityAsText)  # E: type-var
MessageFactory.register("b")(NoCommonFields)  # E: type-var
MessageFactory.create(int)  # E: type-var
