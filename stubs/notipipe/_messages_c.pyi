# Stubs for the compiled message records; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_messages_py.py, is the type truth these mirror.
import inspect
from typing import Any, ClassVar, Self, final

from notipipe._limits import DEFAULT_PRIORITY as DEFAULT_PRIORITY
from notipipe._limits import MAX_PRIORITY as MAX_PRIORITY
from notipipe._limits import MAX_SMS_BODY as MAX_SMS_BODY
from notipipe._limits import MAX_SUBJECT as MAX_SUBJECT
from notipipe._limits import MIN_PRIORITY as MIN_PRIORITY

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "EmailMessage",
    "SMSMessage",
]

@final
class EmailMessage:
    kind: ClassVar[str]
    __match_args__ = ("recipient", "subject", "body", "priority", "created_at", "id")
    __dataclass_fields__: ClassVar[dict[str, object]]
    __signature__: ClassVar[inspect.Signature]
    @property
    def recipient(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def id(self) -> int: ...
    def __init__(
        self,
        recipient: str = "",
        subject: str = "",
        body: str = "",
        *,
        priority: int = ...,
        created_at: float | None = None,
        id: int = 0,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __replace__(self, /, **changes: Any) -> Self: ...

@final
class SMSMessage:
    kind: ClassVar[str]
    __match_args__ = ("phone_number", "body", "priority", "created_at", "id")
    __dataclass_fields__: ClassVar[dict[str, object]]
    __signature__: ClassVar[inspect.Signature]
    @property
    def phone_number(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def id(self) -> int: ...
    def __init__(
        self,
        phone_number: str = "",
        body: str = "",
        *,
        priority: int = ...,
        created_at: float | None = None,
        id: int = 0,
    ) -> None: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __replace__(self, /, **changes: Any) -> Self: ...

# Installed as MessageFactory.create_message (a classmethod) when compiled; see _factory.py.
def create_message(cls: type, msg_type: object, /, **fields: object) -> object: ...
