"""The structural types of notipipe: what an observer is, what a message is.

Both are ``typing.Protocol``: anything with the right shape qualifies, no inheritance needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

__all__ = ["ErrorHandler", "Message", "Observer"]


@runtime_checkable
class Observer[T](Protocol):
    """Anything with an ``update(message)`` method.

    Generic over the message type it accepts (contravariant, inferred from the parameter):
    ``Observer[str]`` for plain text alerts, ``Observer[EmailMessage | SMSMessage]`` for
    structured ones. The parameter is positional-only here, so an implementation may name it
    as it likes; the return value is ignored.
    """

    def update(self, message: T, /) -> object: ...


class Message(Protocol):
    """What every message kind offers: the bound of ``MessageFactory.create``.

    ``EmailMessage`` and ``SMSMessage`` satisfy it; so does any kind registered with
    ``MessageFactory.register``.
    """

    kind: ClassVar[str]

    @property
    def id(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def priority(self) -> int: ...


#: Called as ``handler(observer, message, error)`` when an observer's ``update`` raises.
type ErrorHandler = Callable[[object, object, Exception], object]
