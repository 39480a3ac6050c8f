"""reveal_type() of registered kinds: the class the user wrote, through register and create."""

from dataclasses import dataclass
from typing import reveal_type

from notipipe import BaseMessage, DatabaseConnection, MessageFactory, StoredAlert


# A plain dataclass: no `kind: ClassVar[str]` line (register sets it), the common fields its own.
@MessageFactory.register("plain_push")
@dataclass(frozen=True, slots=True)
class PlainPush:
    device: str
    priority: int = 3
    created_at: float = 0.0
    id: int = 0


@MessageFactory.register("push")
@dataclass(frozen=True, slots=True)
class PushMessage(BaseMessage):
    device: str
    title: str = ""


reveal_type(PlainPush("x"))  # R: tests.typing.reveal_kinds.PlainPush
reveal_type(MessageFactory.create(PushMessage, device="x"))  # R: tests.typing.reveal_kinds.PushMessage
# The fields are **object: a wrong value is refused at run time, not here.
reveal_type(MessageFactory.create(PushMessage, device=1))  # R: tests.typing.reveal_kinds.PushMessage
reveal_type(MessageFactory.create_message("push", device="x"))  # R: notipipe._protocols.Message
db = DatabaseConnection()
db.save(PushMessage("x"))
for message in db.last():
    if isinstance(message, PushMessage):
        reveal_type(message)  # R: tests.typing.reveal_kinds.PushMessage
    elif isinstance(message, StoredAlert):
        reveal_type(message.kind)  # R: str
