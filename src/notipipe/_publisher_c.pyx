# cython: language_level=3, freethreading_compatible=True
"""Compiled fan-out: the twin of ``_publisher_py.py`` (the type truth), same names and behaviour.

``Publisher`` is a cdef class with fixed fields: the snapshot (a tuple of
``_subscriptions.Subscription``: each observer, the callables the fan-out calls for it and its
failure reporter; and the fan-out functions generated for them by ``_fanout.make_fanout``), the
writers' lock, the pending purge of ended subscriptions, and the ``_failures.Failures`` that holds the error
handler and the failure count (shared Python code: failures are off the hot path). The hot path
is ``notify_all``: a C-level property that returns the live snapshot's generated fan-out
function, read from the list ``_current``; ``pub.notify_all(message)`` then calls straight into
it. The per-observer calls run in that generated Python function because CPython inlines
Python-to-Python calls; a C loop re-enters the interpreter once per observer, and so costs more
a message than a plain Python loop, where this design costs about what such a loop does (the
README gives the measurements). A reference kept from an older snapshot still reaches the live
subscribers: each generated function checks that it is the live one and hands over if not. See
``_fanout``. On a free-threaded build ``notify_all`` returns the calling thread's own function
instead, made by that thread from bound methods it made (``_fanout.PerThread``): threads that
each take ``pub.notify_all`` then write no shared reference count but the observers'.

How the reads are made safe. On a free-threaded build a ``cdef object`` field is a bare pointer:
if thread A loaded ``self._subs`` while thread B replaced it, B's decref could free the old
tuple before A's incref lands (a use-after-free). So: ``_current``, the one field read on the hot
path, is written once, before the object is shared (as are ``_threads``, ``_failures`` and ``_purge``); its items are read with
``PySequence_GetItem`` (the list's own thread-safe item access, not ``PyList_GET_ITEM``) and
replaced only through the interpreter's list assignment (``_fanout.install``); and every read
and write of the tuple field ``_subs`` happens inside ``cython.critical_section(self)``, the
per-object mutex CPython uses for its own containers (a no-op on GIL builds). No section covers a call into user code, so an
observer that subscribes from ``update`` cannot deadlock. Writers also take ``_lock`` (a
``threading.Lock``) to make read-modify-write of the tuple atomic without calling ``__eq__`` or
``repr`` inside a critical section.
"""

cimport cython

import asyncio
import sysconfig
import threading
from types import MemberDescriptorType

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from cpython.sequence cimport PySequence_GetItem


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iterator, object arg, PyObject **presult)
    bint PyCoro_CheckExact(object ob)
    unsigned long PyThread_get_thread_ident()  # threading.get_ident()
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    int Py_T_OBJECT_EX

cdef extern from *:
    """
    /* A slot's value, read atomically where threads run at once (relaxed, as the attribute it
       stands for is read without a lock: a hint), not counted: only compared with a known
       object. */
    #if PY_VERSION_HEX >= 0x030D0000
    #define notipipe_slot_peek(o, offset) \
        ((PyObject *)_Py_atomic_load_ptr_relaxed((PyObject **)((char *)(o) + (offset))))
    #else
    #define notipipe_slot_peek(o, offset) (*(PyObject **)((char *)(o) + (offset)))
    #endif
    """
    PyObject* _slot_peek "notipipe_slot_peek"(object o, Py_ssize_t offset) noexcept

from notipipe._async import _IDLE_TURNS, _Batch, _message_of, finish_awaiting
from notipipe._failures import Failures, log_observer_error
from notipipe._fanout import FREE_THREADED, PerThread, install
from notipipe._subscriptions import Purge, make_subscription, observer_counts

__all__ = ["Publisher", "log_observer_error"]


cdef class _AsyncUpdate:
    """``AsyncDelivery.update`` (see ``_async``, the truth it mirrors step for step), in C.

    The per-message producer path of an async subscription: on a free-threaded build the
    interpreter runs the Python method's attribute reads and the ``is_closed`` check without its
    specialising fast paths, and each Python-level access to the delivery changes its shared
    reference count, whose cache line the loop's drain touches too. Here the fields are read
    from C through fields set once, before the object is shared (so a plain pointer read is
    safe), and the delivery's own state is read from it on each call: the slow paths (a full
    queue, an ended subscription, the wake-up) stay the delivery's Python methods, run as is.
    """

    cdef object _delivery
    cdef object _queue
    cdef object _append
    cdef object _loop
    cdef object _is_closed
    cdef bint _base_loop
    cdef Py_ssize_t _size
    cdef Py_ssize_t _ended_at
    cdef Py_ssize_t _scheduled_at

    def __cinit__(self, delivery):
        self._delivery = delivery
        # The two flags read per message go straight to their slots (see ``_drain``).
        self._ended_at = _slot_offset(type(delivery), "_ended")
        self._scheduled_at = _slot_offset(type(delivery), "_scheduled")
        self._queue = delivery._queue  # never replaced, not even after a fork
        self._append = self._queue.append
        self._loop = delivery._loop
        self._is_closed = self._loop.is_closed
        # asyncio's own loops answer is_closed() with their _closed attribute: read it directly
        # (no Python frame, no reference to the loop taken per message; the loop's thread
        # touches its count all the time). Any other loop is asked.
        self._base_loop = type(self._loop).is_closed is asyncio.BaseEventLoop.is_closed
        self._size = delivery._size

    cdef inline bint _loop_closed(self) except -1:
        if self._base_loop:
            return self._loop._closed
        return self._is_closed()

    cdef inline bint _ended(self) except -1:
        if self._ended_at >= 0:
            return _slot_peek(self._delivery, self._ended_at) != <PyObject*>_FALSE
        return self._delivery._ended

    cdef inline bint _scheduled(self) except -1:
        if self._scheduled_at >= 0:
            return _slot_peek(self._delivery, self._scheduled_at) != <PyObject*>_FALSE
        return self._delivery._scheduled

    def update(self, message, /):
        if len(self._queue) >= self._size or self._ended():
            self._delivery._put(message)
            return
        self._append(message)
        # The plain read first: while a drain runs, a publisher does not touch the flag. The
        # flag is read afresh: a forked child replaces it.
        if not self._scheduled() and self._delivery._flag.acquire(False):
            self._delivery._scheduled = True
            self._delivery._wake(message)
        elif self._loop_closed():  # closed with a wake-up pending: that drain never runs
            self._delivery._end(message)


#: Only a free-threaded build takes the compiled drain: there the interpreter runs the Python
#: drain's per-item steps without its specialising fast paths; a GIL build runs them faster in
#: its own loop than through C (see ``_fanout`` on calls from C into Python code).
_COMPILED_DRAIN = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


cdef int _first_step(object coro, PyObject **yielded) except -1:
    # The first step of a native coroutine, as ``await`` would take it, but from C: an update
    # that returns without suspending (the common case) costs no awaiting machinery. 1: it
    # yielded ``yielded[0]`` (a new reference) to the task; 0: it returned; -1: it raised.
    cdef PySendResult sent = PyIter_Send(coro, None, yielded)
    if sent == PYGEN_ERROR:
        return -1
    if sent == PYGEN_RETURN:
        Py_XDECREF(yielded[0])
        yielded[0] = NULL
        return 0
    return 1


cdef dict _offsets = {}  # (class, name): _slot_offset's answer, found once per class


cdef Py_ssize_t _slot_offset(object cls, str name) except -2:
    """Where instances of ``cls`` keep the slot ``name`` (a ``__slots__`` entry of ``cls`` or a
    base, read as ``getattr`` would), or -1 if the attribute is anything else (the drain then
    reads it as an attribute)."""
    key = (cls, name)
    found = _offsets.get(key)
    if found is not None:
        return <Py_ssize_t>found
    cdef Py_ssize_t offset = -1
    cdef PyMemberDef* member
    if cls.__getattribute__ is object.__getattribute__:
        for base in cls.__mro__:
            if name in base.__dict__:
                descriptor = base.__dict__[name]
                if type(descriptor) is MemberDescriptorType and issubclass(cls, descriptor.__objclass__):
                    member = (<PyMemberDescrObject*>descriptor).d_member
                    if member.type == Py_T_OBJECT_EX:
                        offset = member.offset
                break
    _offsets[key] = offset
    return offset


# The objects the two slots hold when there is nothing to attend to (the int 0 is the cached one).
cdef object _FALSE = False
cdef object _ZERO = 0


async def _drain(d):
    """``AsyncDelivery._drain`` (see ``_async``, the truth it mirrors step for step), in C."""
    queue, flag = d._queue, d._flag
    popleft = queue.popleft
    strong, ref, failed = d._observer, d._ref, d._failed
    task = asyncio.current_task()
    cdef Py_ssize_t low = d._size // 2
    cdef int turns = _IDLE_TURNS
    cdef PyObject *yielded = NULL
    # The two reads made per item (``d._stirred``, ``task.own_cancels``) go straight to their
    # slots: as attributes they cost a lookup each, a large share of an item on 3.13t.
    cdef Py_ssize_t stirred_at = _slot_offset(type(d), "_stirred")
    cdef Py_ssize_t cancels_at = _slot_offset(type(task), "own_cancels")
    cdef PyObject* false = <PyObject*>_FALSE
    cdef PyObject* zero = <PyObject*>_ZERO
    while True:
        try:
            item = popleft()
        except IndexError:
            if turns:
                turns -= 1
                await d._idle_turn()
                continue
            if d._stop_draining(queue, flag):
                return
            turns = _IDLE_TURNS
            continue
        turns = _IDLE_TURNS
        if (_slot_peek(d, stirred_at) != false if stirred_at >= 0 else d._stirred) and d._attend(
            queue, low, item
        ):
            continue
        observer = strong if ref is None else ref()
        if observer is None:
            d._forget()
            d._count_dropped(item)
            continue
        try:
            if type(item) is _Batch:
                coro = observer.update_many(item.messages)
            else:
                coro = observer.update(item)
            if not PyCoro_CheckExact(coro):
                await coro
            elif _first_step(coro, &yielded):  # suspended: await the rest
                pending = <object>yielded
                Py_XDECREF(yielded)
                await finish_awaiting(coro, pending)
        except Exception as error:
            failed(_message_of(item), error)
        except GeneratorExit:
            raise
        except BaseException as error:
            d._raised(task, item, error)
        if _slot_peek(task, cancels_at) != zero if cancels_at >= 0 else task.own_cancels:
            await task.withdraw_own_cancels()


cdef object _thread_pair(object threads):
    # PerThread.pair() (see _fanout) without its Python frame in the common case: the calling
    # thread's pair for the live snapshot, looked up as pair() looks it up; made by pair() if
    # there is none yet.
    mine = threads._snapshot.by_thread.get(PyThread_get_thread_ident())
    if mine is None:
        return threads.pair()
    return mine


cdef class Publisher:
    """Delivers each message to every subscribed observer, in subscription order.

    Thread-safe: subscribe, unsubscribe and notify from any thread, including from an observer.
    An observer that raises does not stop delivery to the others; the error goes to
    ``error_handler`` (by default, a log record naming the observer) and ``failures`` counts it.

    ``notify_all(message)`` delivers ``message`` to every observer subscribed when the call
    starts; ``notify_many(messages)`` delivers the batch and returns how many messages were sent
    (the whole batch goes to one snapshot; observers with ``update_many`` get it in one call,
    after the others have had each message in turn). Both are functions held in read-only fields.
    """

    cdef object _lock
    cdef tuple _subs
    cdef list _current
    cdef object _threads
    cdef object _failures
    cdef object _purge
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        # Accepts (and ignores) the arguments of a subclass's __init__, e.g. DatabaseConnection(path=...).
        self._lock = threading.Lock()
        self._failures = Failures()
        self._purge = Purge(self)
        # Free-threaded: each thread gets fan-out functions of its own (see _fanout.PerThread).
        self._threads = PerThread() if FREE_THREADED else None
        self._current = [None, None] if self._threads is None else [None, None, self._threads]
        self._publish(())

    def __class_getitem__(cls, item):
        # Publisher[str] at run time, as for the generic pure twin.
        return cls

    def _reinit_locks_after_fork(self):
        """In a forked child: fresh locks (another thread of the parent may have held them)."""
        self._lock = threading.Lock()
        self._failures.lock = threading.Lock()

    # -- snapshot access: the only places the tuple field is touched ------------------------

    cdef inline tuple _read_subs(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._subs
        return snapshot

    cdef void _publish(self, tuple subs) except *:
        # Called with _lock held (or from __cinit__). install() runs Python code, so it stays
        # outside the critical section.
        with cython.critical_section(self):
            self._subs = subs
        updates = tuple([s.update for s in subs])
        failed = tuple([s.failed for s in subs])
        batches = tuple([s.update_many for s in subs])
        if any([b is not None for b in batches]):
            install(self._current, updates, failed, batches)
        else:
            install(self._current, updates, failed)

    def _purge_dead(self):
        """Drop ended subscriptions, if the lock is free (see ``_subscriptions``)."""
        cdef tuple subs, live
        if not self._lock.acquire(False):
            return  # held: whoever holds it, or the next change, drops them
        try:
            self._purge.pending = False
            subs = self._read_subs()
            live = tuple([s for s in subs if not s.dead])
            if len(live) != len(subs):
                self._publish(live)
        finally:
            self._lock.release()

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, observer, /, *, weak=False, loop=None, queue_size=1024, overflow="wait"):
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.

        An observer whose ``update`` is a coroutine function is awaited on ``loop`` (default: the
        loop running in the calling thread; none is a TypeError), one message at a time, in
        publication order, through a queue of ``queue_size`` messages; when it is full,
        ``overflow`` decides: "wait" blocks the publisher until there is room (a publish from
        the loop's own thread drops the oldest instead), "drop_oldest" drops the oldest message
        and counts it (``dropped``). ``loop``, ``queue_size`` and ``overflow`` only matter for
        async observers. An observer with ``update_many(messages)`` gets each ``notify_many``
        batch in one call. ``weak=True``: the subscription ends when ``observer`` is
        garbage-collected (it is held through a weak reference).
        """
        sub = make_subscription(
            self._failures,
            self._purge,
            observer,
            weak=weak,
            loop=loop,
            queue_size=queue_size,
            overflow=overflow,
        )
        if sub.delivery is not None:
            sub.update = _AsyncUpdate(sub.delivery).update
            if _COMPILED_DRAIN:
                sub.delivery._drain_with = _drain
        cdef tuple subs
        with self._lock:
            subs = self._read_subs()
            for s in subs:
                if s.ref() is observer and not s.dead:
                    return False
            self._purge.pending = False
            self._publish(tuple([s for s in subs if not s.dead]) + (sub,))
        return True

    def unsubscribe(self, observer, /):
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        cdef tuple subs
        found = None
        with self._lock:
            subs = self._read_subs()
            for s in subs:
                if s.ref() is observer and not s.dead:
                    found = s
                    break
            if found is None:
                return False
            found.dead = True
            self._purge.pending = False
            self._publish(tuple([s for s in subs if not s.dead]))
        if found.delivery is not None:
            found.delivery.close()  # what it has not awaited yet is dropped
        return True

    @property
    def observers(self):
        """The current subscribers, in subscription order (a snapshot)."""
        found = []
        for s in self._read_subs():
            observer = s.ref()
            if observer is not None and not s.dead:
                found.append(observer)
        return tuple(found)

    def dropped(self, observer, /):
        """How many messages the overflow policy has dropped for this async observer so far.

        0 for a plain observer. Raises ValueError if ``observer`` is not subscribed.
        """
        for s in self._read_subs():
            if s.ref() is observer and not s.dead:
                return s.dropped
        raise ValueError(f"{observer!r} is not subscribed")

    def _observer_counts(self):
        """See ``_subscriptions.observer_counts``."""
        return observer_counts(self._read_subs(), self._failures)

    # -- delivery ------------------------------------------------------------------------------

    @property
    def notify_all(self):
        """``notify_all(message)``: the live snapshot's fan-out function.

        Read through the list's own (thread-safe) item access, never a raw pointer. A reference
        kept from an older snapshot hands over to the live function when called. On a
        free-threaded build, the calling thread's own function (see ``_fanout.PerThread``).
        """
        if self._threads is not None:
            return _thread_pair(self._threads)[0]
        return PySequence_GetItem(self._current, 0)

    @property
    def notify_many(self):
        """``notify_many(messages)``: the live snapshot's batch function; returns how many."""
        if self._threads is not None:
            return _thread_pair(self._threads)[1]
        return PySequence_GetItem(self._current, 1)

    # -- failures ------------------------------------------------------------------------------

    @property
    def failures(self):
        """How many ``update`` calls have raised since this publisher was created."""
        return self._failures.count

    @property
    def error_handler(self):
        """Called as ``handler(observer, message, error)`` for each failing ``update``.

        ``observer`` is the object that was subscribed. The default, ``log_observer_error``, is
        throttled per observer: the first failure is logged with its traceback, the repeats are
        counted and summarised in one line at most every ``SUMMARY_INTERVAL`` seconds.
        """
        return self._failures.handler

    @error_handler.setter
    def error_handler(self, handler):
        if not callable(handler):
            raise TypeError(f"error_handler must be callable, got {handler!r}")
        self._failures.handler = handler
