# cython: language_level=3, freethreading_compatible=True
"""Compiled fan-out: the twin of ``_publisher_py.py`` (the type truth), same names and behaviour.

``Publisher`` is a cdef class with fixed fields: the snapshot (observers, their bound
``update`` methods, their failure reporters, and the fan-out functions generated for them by
``_fanout.make_fanout``), the writers' lock, and the ``_failures.Failures`` that holds the error
handler and the failure count (shared Python code: failures are off the hot path). The hot path
is ``notify_all``: a C-level property that returns the live snapshot's generated fan-out
function, read from the list ``_current``; ``pub.notify_all(message)`` then calls straight into
it. The per-observer calls run in that generated Python function because CPython inlines
Python-to-Python calls; a C loop re-enters the interpreter once per observer: 2,900 against
2,350 instructions a message for four observers, under callgrind, where this design takes
2,200. A reference kept from an older snapshot still reaches the live subscribers: each
generated function checks that it is the live one and hands over if not. See ``_fanout``.

How the reads are made safe. On a free-threaded build a ``cdef object`` field is a bare pointer:
if thread A loaded ``self._observers`` while thread B replaced it, B's decref could free the old
tuple before A's incref lands (a use-after-free). So: ``_current``, the one field read on the hot
path, is written once, before the object is shared (as is ``_failures``); its items are read with
``PySequence_GetItem`` (the list's own thread-safe item access, not ``PyList_GET_ITEM``) and
replaced only through the interpreter's list assignment (``_fanout.install``); and every read and
write of the tuple
fields happens inside ``cython.critical_section(self)``, the per-object mutex CPython uses for
its own containers (a no-op on GIL builds). No section covers a call into user code, so an
observer that subscribes from ``update`` cannot deadlock. Writers also take ``_lock`` (a
``threading.Lock``) to make read-modify-write of the tuples atomic without calling ``__eq__`` or
``repr`` inside a critical section.
"""

cimport cython

import threading

from cpython.sequence cimport PySequence_GetItem

from notipipe._failures import Failures, ObserverFailures, log_observer_error
from notipipe._fanout import install

__all__ = ["Publisher", "log_observer_error"]


cdef object _bound_update(object observer):
    update = getattr(observer, "update", None)
    if update is None or not callable(update):
        raise TypeError(
            f"{observer!r} ({type(observer).__name__}) is not an observer: "
            "it needs a callable update(message) method"
        )
    return update


cdef class Publisher:
    """Delivers each message to every subscribed observer, in subscription order.

    Thread-safe: subscribe, unsubscribe and notify from any thread, including from an observer.
    An observer that raises does not stop delivery to the others; the error goes to
    ``error_handler`` (by default, a log record naming the observer) and ``failures`` counts it.

    ``notify_all(message)`` delivers ``message`` to every observer subscribed when the call
    starts; ``notify_many(messages)`` delivers each message in turn and returns how many were
    sent (the whole batch goes to one snapshot). Both are functions held in read-only fields.
    """

    cdef object _lock
    cdef tuple _observers
    cdef tuple _updates
    cdef tuple _failed
    cdef list _current
    cdef object _failures
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        # Accepts (and ignores) the arguments of a subclass's __init__, e.g. DatabaseConnection(path=...).
        self._lock = threading.Lock()
        self._failures = Failures()
        self._current = [None, None]
        self._publish((), (), ())

    def __class_getitem__(cls, item):
        # Publisher[str] at run time, as for the generic pure twin.
        return cls

    def _reinit_locks_after_fork(self):
        """In a forked child: fresh locks (another thread of the parent may have held them)."""
        self._lock = threading.Lock()
        self._failures.lock = threading.Lock()

    # -- snapshot access: the only places the tuple fields are touched -----------------------

    cdef inline tuple _read_updates(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._updates
        return snapshot

    cdef inline tuple _read_failed(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._failed
        return snapshot

    cdef inline tuple _read_observers(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._observers
        return snapshot

    cdef void _publish(self, tuple observers, tuple updates, tuple failed):
        # Called with _lock held (or from __cinit__). The three tuples run in parallel.
        # install() runs Python code, so it stays outside the critical section.
        with cython.critical_section(self):
            self._observers = observers
            self._updates = updates
            self._failed = failed
        install(self._current, updates, failed)

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, observer, /):
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.
        """
        update = _bound_update(observer)
        failed = ObserverFailures(self._failures, observer).failed
        cdef tuple observers
        with self._lock:
            observers = self._read_observers()
            for o in observers:
                if o is observer:
                    return False
            self._publish(
                observers + (observer,), self._read_updates() + (update,), self._read_failed() + (failed,)
            )
        return True

    def unsubscribe(self, observer, /):
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        cdef tuple observers, updates, failed
        cdef Py_ssize_t i
        with self._lock:
            observers = self._read_observers()
            for i in range(len(observers)):
                if observers[i] is observer:
                    updates = self._read_updates()
                    failed = self._read_failed()
                    self._publish(
                        observers[:i] + observers[i + 1:],
                        updates[:i] + updates[i + 1:],
                        failed[:i] + failed[i + 1:],
                    )
                    return True
        return False

    @property
    def observers(self):
        """The current subscribers, in subscription order (a snapshot)."""
        return self._read_observers()

    # -- delivery ------------------------------------------------------------------------------

    @property
    def notify_all(self):
        """``notify_all(message)``: the live snapshot's fan-out function.

        Read through the list's own (thread-safe) item access, never a raw pointer. A reference
        kept from an older snapshot hands over to the live function when called.
        """
        return PySequence_GetItem(self._current, 0)

    @property
    def notify_many(self):
        """``notify_many(messages)``: the live snapshot's batch function; returns how many."""
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
