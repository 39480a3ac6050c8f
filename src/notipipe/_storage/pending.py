"""``Pending``: the messages queued for a store's writer, as the producers handed them over.

A producer's ``put_many`` hands over a whole list (the store's own copy), which the queue keeps as
it is: queuing a batch costs one append, not one per message, and the writer takes its batch by
slicing lists, not by popping messages one by one. ``put`` adds to the last list while that one
is small. Not thread-safe: the store guards it with its condition's lock.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Pending"]


class Pending[T]:
    """Messages in the order queued; ``len()`` counts messages. A list given to ``extend`` or
    ``push_front`` becomes the queue's (the caller must not change it afterwards), and a list
    ``take`` returns is the caller's."""

    __slots__ = ("_count", "_head", "_lists", "_small")

    def __init__(self, small: int) -> None:
        self._lists: deque[list[T]] = deque()
        self._head = 0  # messages of the first list taken already
        self._count = 0
        self._small = max(small, 1)  # a list ``append`` still adds to

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def append(self, message: T) -> None:
        lists = self._lists
        if lists and len(lists[-1]) < self._small:
            lists[-1].append(message)
        else:
            lists.append([message])
        self._count += 1

    def extend(self, batch: list[T]) -> None:
        """Queue ``batch`` (which becomes the queue's) after everything queued."""
        if batch:
            self._lists.append(batch)
            self._count += len(batch)

    def push_front(self, batch: list[T]) -> None:
        """Queue ``batch`` (which becomes the queue's) before everything queued: a batch taken
        and given back."""
        if not batch:
            return
        if self._head:
            self._lists[0] = self._lists[0][self._head :]
            self._head = 0
        self._lists.appendleft(batch)
        self._count += len(batch)

    def take(self, n: int) -> list[T]:
        """Up to ``n`` messages off the front, in order, as a list of the caller's."""
        lists = self._lists
        taken: list[T] | None = None
        while n > 0 and lists:
            head, start = lists[0], self._head
            rest = len(head) - start
            if rest > n:
                part = head[start : start + n]
                self._head = start + n
                n = 0
            else:
                lists.popleft()
                part = head if start == 0 else head[start:]
                self._head = 0
                n -= rest
            if taken is None:
                taken = part  # the queue's list (popped, or a slice): the caller's now
            else:
                taken += part
        batch = [] if taken is None else taken
        self._count -= len(batch)
        return batch

    def clear(self) -> None:
        self._lists.clear()
        self._head = 0
        self._count = 0
