"""mypy must reject each marked line: register takes a dataclass with the common fields, create a
message class."""

from dataclasses import dataclass

from notipipe import MessageFactory


class NotADataclass:
    priority: int = 3
    created_at: float = 0.0
    id: int = 0


@dataclass(frozen=True, slots=True)
class NoCommonFields:
    device: str


MessageFactory.register("a")(NotADataclass)  # E: type-var
MessageFactory.register("b")(NoCommonFields)  # E: type-var
MessageFactory.create(int)  # E: type-var
