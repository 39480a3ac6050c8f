"""The structural types of notipipe: what an observer is, what a message is.

Both are ``typing.Protocol``: anything with the right shape qualifies, no inheritance needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, Protocol, runtime_checkable

__all__ = ["AsyncObserver", "ErrorHandler", "Message", "Observer", "Overflow"]


@runtime_checkable
class Observer[T](Protocol):
    """Anything with an ``update(message)`` method.

    Generic over the message type it accepts (contravariant, inferred from the parameter):
    ``Observer[str]`` for plain text alerts, ``Observer[EmailMessage | SMSMessage]`` for
    structured ones. The parameter is positional-only here, so an implementation may name it
    as it likes; the return value is ignored.
    """

    def update(self, message: T, /) -> object: ...


@runtime_checkable
class AsyncObserver[T](Protocol):
    """Anything with an ``async def update(message)`` method: delivered on an asyncio loop.

    ``Publisher.subscribe`` recognises it at run time (``update`` is a coroutine function) and
    awaits each message on the observer's loop, one at a time, in publication order. Like
    ``Observer``, generic over the message type, contravariant; the result is ignored.
    """

    async def update(self, message: T, /) -> object: ...


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

#: What a full async observer queue does to the publisher: "wait" for room, or "drop_oldest".
type Overflow = Literal["wait", "drop_oldest"]
