"""Fan-out functions generated per subscriber snapshot, shared by both publisher twins.

Why generated Python. The per-message work of a publisher is calling each observer's
``update``, and observers are Python functions. CPython (3.11+) runs a Python-to-Python call
inside the same interpreter loop, without a new C-level frame; a call from C (Cython's loop, or
any C extension's) enters the interpreter afresh for every observer, which makes each call
dearer than the same call from a plain Python loop. So each snapshot gets a small function
with one ``try`` per observer, unrolled, called once per message: the twins then pay one
C-to-Python transition per message, not one per observer, and ``try`` costs nothing in 3.11+
until something raises. The code is built from a fixed template (no user text enters it) and
compiled once per observer count.

``make_fanout(updates, failed, current, batches)`` returns ``(notify, notify_many)`` where
``notify(message)`` delivers one message and ``notify_many(messages)`` a batch, calling
``failed[i](message, error)`` for each ``Exception`` that ``updates[i]`` raises: ``failed`` is
the snapshot's tuple of ``ObserverFailures.failed`` (see ``_failures``), one per observer, so a
failure is reported against the object that was subscribed, and the functions need no
reference to the publisher (they keep working after it is gone). Only the ``except`` clauses
read ``failed``: delivery itself does the same work as before. ``batches`` holds each observer's
``update_many`` (or None): ``notify_many`` calls those once per batch (see ``_factory``).

On a free-threaded build the publishers hand each thread a pair of its own (``PerThread``, at the
end of this module): there, every object has an owning thread, and reference counts written by
several threads cost atomic operations on a contended cache line.
"""

from __future__ import annotations

import functools
import sysconfig
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["FREE_THREADED", "UNROLL_LIMIT", "PerThread", "install", "make_entry_points", "make_fanout"]

#: On a free-threaded build each thread gets fan-out functions of its own (see ``PerThread``).
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

#: Above this many observers a plain loop is generated instead (the code would only grow).
UNROLL_LIMIT = 32

type Failed = Callable[[Any, Exception], object]
type Notify = Callable[[Any], None]
type NotifyMany = Callable[[Iterable[Any]], int]


def _call(update: str, failed: str, indent: str, arg: str = "message") -> str:
    return (
        f"{indent}try:\n"
        f"{indent}    {update}({arg})\n"
        f"{indent}except Exception as error:\n"
        f"{indent}    {failed}({arg}, error)\n"
    )


def _calls(prefix: str, failed: str, count: int, indent: str, arg: str = "message") -> str:
    """One ``try`` per observer (``count`` of them), or a loop over ``<prefix>pairs`` (-1)."""
    if count < 0:
        return f"{indent}for u, f in {prefix}pairs:\n" + _call("u", "f", indent + "    ", arg)
    calls = (_call(f"{prefix}{i}", f"{failed}[{i}]", indent, arg) for i in range(count))
    return "".join(calls) or f"{indent}pass\n"


@functools.lru_cache(maxsize=256)
def _factory(
    count: int, batched: int = 0, per_thread: bool = False
) -> Callable[..., tuple[Notify, NotifyMany]]:
    """Compile the maker of fan-out functions for ``count`` observers (-1: loops over pairs).

    ``batched`` of them take batches (``update_many``; -1 with loops: some do). Without any,
    ``notify_many`` calls every ``update`` per message, as ``notify`` does. With some, it calls
    the per-message observers (``p*``) for each message in turn, then each batch observer
    (``b*``) once with the whole batch as a tuple (one per batch, so that no observer sees
    another's changes to it). The unrolled functions take the failure reporters as tuples,
    indexed only in an ``except`` clause: the success path keeps one closure cell per observer.
    ``per_thread``: the functions check a flag of their own thread instead (see ``PerThread``).
    """
    loops = count < 0
    if loops:
        params = "pairs, ppairs, bpairs"
    else:
        names = [*(f"u{i}" for i in range(count)), "failed"]
        if batched:
            names += [*(f"p{i}" for i in range(count - batched)), "pfailed"]
            names += [*(f"b{i}" for i in range(batched)), "bfailed"]
        params = ", ".join(names)
    if count == 0:  # no observer: the count alone (a list's without looking at each message)
        many = (
            "        if type(messages) is list or type(messages) is tuple:\n"
            "            return len(messages)\n"
            "        return sum(1 for _ in messages)\n"
        )
    elif not batched:
        many = (
            "        sent = 0\n"
            "        for message in messages:\n"
            "            sent += 1\n"
            f"{_calls('' if loops else 'u', 'failed', count, ' ' * 12)}"
            "        return sent\n"
        )
    else:
        singles, batches = (-1, -1) if loops else (count - batched, batched)
        many = (
            "        messages = tuple(messages)\n"
            "        if not messages:\n"
            "            return 0\n"
            "        for message in messages:\n"
            f"{_calls('p', 'pfailed', singles, ' ' * 12)}"
            f"{_calls('b', 'bfailed', batches, ' ' * 8, 'messages')}"
            "        return len(messages)\n"
        )
    # Each function first checks that it is still the live one (``current`` holds the live
    # pair): a reference kept from an older snapshot hands over to the live function, so that
    # whoever holds ``pub.notify_all`` always reaches the current subscribers. A per-thread pair
    # reads its own thread's flag instead, cleared when the snapshot is replaced, and asks
    # ``renew()`` for the calling thread's live pair: it reads no object another thread writes.
    if per_thread:
        tail = "live, renew"
        check = ("        if not live[0]:\n", "            return renew()[{i}]({arg})\n")
    else:
        tail = "current"
        check = (
            "        live = current[{i}]\n        if live is not {name}:\n",
            "            return live({arg})\n",
        )
    guard = "".join(check)
    source = (
        f"def make({params}, {tail}):\n"
        "    def notify(message, /):\n"
        f"{guard.format(i=0, name='notify', arg='message')}"
        f"{_calls('' if loops else 'u', 'failed', count, ' ' * 8)}"
        "    def notify_many(messages, /):\n"
        f"{guard.format(i=1, name='notify_many', arg='messages')}"
        f"{many}"
        "    return notify, notify_many\n"
    )
    namespace: dict[str, Any] = {}
    kind = "per-thread " if per_thread else ""
    exec(compile(source, f"<notipipe {kind}fan-out x{count}/{batched}>", "exec"), namespace)
    maker: Callable[..., tuple[Notify, NotifyMany]] = namespace["make"]
    return maker


def make_fanout(
    updates: tuple[Callable[[Any], object], ...],
    failed: tuple[Failed, ...],
    current: list[Any],
    batches: tuple[Callable[[Any], object] | None, ...] = (),
) -> tuple[Notify, NotifyMany]:
    """The ``(notify, notify_many)`` pair for this snapshot of bound ``update`` methods.

    ``failed[i]`` reports a failure of ``updates[i]``; ``batches[i]``, if given and not None,
    is that observer's ``update_many``, called by ``notify_many`` once per batch instead of
    ``updates[i]`` per message (its failure is reported with the batch as the message).
    """
    return _build(updates, failed, batches, False, (current,))


def _build(
    updates: tuple[Callable[[Any], object], ...],
    failed: tuple[Failed, ...],
    batches: tuple[Callable[[Any], object] | None, ...],
    per_thread: bool,
    tail: tuple[Any, ...],
) -> tuple[Notify, NotifyMany]:
    many = [i for i, b in enumerate(batches) if b is not None]
    singles = [i for i, b in enumerate(batches) if b is None] if many else []
    if len(updates) > UNROLL_LIMIT:
        pairs = tuple(zip(updates, failed, strict=True))
        ppairs = tuple((updates[i], failed[i]) for i in singles)
        bpairs = tuple((batches[i], failed[i]) for i in many)
        return _factory(-1, -1 if many else 0, per_thread)(pairs, ppairs, bpairs, *tail)
    if not many:
        return _factory(len(updates), 0, per_thread)(*updates, failed, *tail)
    return _factory(len(updates), len(many), per_thread)(
        *updates,
        failed,
        *(updates[i] for i in singles),
        tuple(failed[i] for i in singles),
        *(batches[i] for i in many),
        tuple(failed[i] for i in many),
        *tail,
    )


def make_entry_points(current: list[Any]) -> tuple[Notify, NotifyMany]:
    """A publisher's stable ``notify_all`` and ``notify_many``, made once per publisher.

    ``current`` holds ``[notify, notify_many]`` of the live snapshot; the publisher replaces its
    items when it changes. Each call reads the item once (a list read is atomic on every
    CPython build, free-threaded included, without a lock), so a reference kept to
    ``pub.notify_all`` keeps following the subscriptions, and the calls stay Python-to-Python.
    The pure twin uses these; the compiled twin hands out the live functions themselves from a
    C-level property, which saves this extra Python frame per message.
    """

    def notify_all(message: Any, /) -> None:
        current[0](message)

    def notify_many(messages: Iterable[Any], /) -> int:
        sent: int = current[1](messages)
        return sent

    return notify_all, notify_many


def install(
    current: list[Any],
    updates: tuple[Callable[[Any], object], ...],
    failed: tuple[Failed, ...],
    batches: tuple[Callable[[Any], object] | None, ...] = (),
) -> None:
    """Make the snapshot ``updates`` live: replace the items of ``current`` (see above).

    Written in Python on purpose: the interpreter's list item assignment is the thread-safe one
    on a free-threaded build (a C extension's ``PyList_SET_ITEM`` would bypass the list's lock).
    A third item, a ``PerThread``, gets the snapshot too (after the shared pair: see there).
    """
    old = current[0], current[1]
    current[0], current[1] = make_fanout(updates, failed, current, batches)
    for function in old:
        _retire(function)
    if len(current) > 2:
        current[2].replace(updates, failed, batches)


def _retire(function: object) -> None:
    """Empty the cell through which a replaced fan-out function refers to itself.

    The guard ``current[i] is not notify`` reads the function from its own closure: a reference
    cycle, which would keep a replaced function, and the observers it calls, until the cyclic
    GC runs (an unsubscribed observer outliving ``unsubscribe``). Emptied, the cell holds None,
    which is never the live function, so a replaced function still hands every call over to
    the live one (a call already past its guard delivers as before).
    """
    if not isinstance(function, types.FunctionType) or function.__closure__ is None:
        return  # the first snapshot's placeholders
    if not function.__code__.co_filename.startswith("<notipipe fan-out"):
        return
    names = function.__code__.co_freevars
    if function.__name__ in names:
        function.__closure__[names.index(function.__name__)].cell_contents = None


# -- per-thread fan-out (free-threaded builds) -------------------------------------------------
#
# Why. On a free-threaded build every object has an owning thread: its own reference count
# changes are plain increments, any other thread's are atomic, on the cache line the owner writes
# too. Calling one shared generated function from several threads writes the reference counts of
# the function, each of its closure cells and each bound ``update`` method from every thread, for
# every message: the threads then take turns on those cache lines. A pair made by the calling
# thread, over cells and bound methods it made, is written by that thread alone. What stays
# shared is what must: the observers themselves (a Python call holds a reference to its ``self``).


class _Snapshot:
    """What the per-thread pairs are made from, and the pairs made from it, by thread."""

    __slots__ = ("batches", "by_thread", "failed", "updates")

    def __init__(
        self,
        updates: tuple[Callable[[Any], object], ...],
        failed: tuple[Failed, ...],
        batches: tuple[Callable[[Any], object] | None, ...],
    ) -> None:
        self.updates = updates
        self.failed = failed
        self.batches = batches
        # thread ident -> (notify, notify_many, live flag): dropped with the snapshot.
        self.by_thread: dict[int, tuple[Notify, NotifyMany, list[bool]]] = {}


def _own(method: Callable[..., object]) -> Callable[..., object]:
    """A bound method made again by the calling thread (owned by it); anything else as is."""
    if isinstance(method, types.MethodType) and type(method) is types.MethodType:
        return types.MethodType(method.__func__, method.__self__)
    return method


class PerThread:
    """A publisher's fan-out functions made per thread, each thread's used by that thread.

    ``pair()`` returns the calling thread's ``(notify, notify_many, flag)`` for the live snapshot,
    made on first use from bound methods made again in that thread. ``replace`` (writers, under
    the publisher's lock) installs a new snapshot, then clears the flag of every pair made from
    the old one; a pair whose flag is clear hands over to ``pair()`` of the thread calling it,
    so a reference kept to an old pair still reaches the live subscribers, from any thread. Each
    pair holds its own (strong) references to what it calls: a call in progress, or a pair kept
    by its caller, keeps its observers alive as a kept shared pair did.

    Why no pair goes stale unnoticed: ``replace`` stores the new snapshot before it reads the old
    one's ``by_thread``, and ``_renew`` registers a pair in ``by_thread`` before it checks that
    its snapshot is still the live one; the dict's own lock orders the two, so either the writer
    sees the pair (and clears its flag) or the reader sees the new snapshot (and makes another).
    """

    __slots__ = ("__weakref__", "_snapshot")

    def __init__(self) -> None:
        self._snapshot = _Snapshot((), (), ())

    def replace(
        self,
        updates: tuple[Callable[[Any], object], ...],
        failed: tuple[Failed, ...],
        batches: tuple[Callable[[Any], object] | None, ...] = (),
    ) -> None:
        """Make a new snapshot live and retire every pair made from the old one."""
        old = self._snapshot
        self._snapshot = _Snapshot(updates, failed, batches)
        for _, _, live in list(old.by_thread.values()):
            live[0] = False
        old.by_thread.clear()  # the old pairs' references go with their last user

    def pair(self) -> tuple[Notify, NotifyMany, list[bool]]:
        """The calling thread's ``(notify, notify_many, flag)`` for the live snapshot."""
        # A pair found here may be retired the next moment (or just now): its functions hand over.
        # The compiled twin looks it up the same way in C (_publisher_c._thread_pair).
        mine = self._snapshot.by_thread.get(threading.get_ident())
        if mine is None:
            return self._renew()
        return mine

    def _renew(self) -> tuple[Notify, NotifyMany, list[bool]]:
        ident = threading.get_ident()
        while True:
            snapshot = self._snapshot
            live = [True]
            updates = tuple(_own(u) for u in snapshot.updates)
            batches = tuple(None if b is None else _own(b) for b in snapshot.batches)
            notify, many = _build(updates, snapshot.failed, batches, True, (live, self.pair))
            mine = (notify, many, live)
            snapshot.by_thread[ident] = mine
            if self._snapshot is snapshot:
                return mine
