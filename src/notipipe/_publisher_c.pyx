# cython: language_level=3, freethreading_compatible=True
"""Compiled fan-out: the twin of ``_publisher_py.py`` (the type truth), same names and behaviour.

``Publisher`` is a cdef class with fixed fields. The hot path is ``notify_all``: one protected
read of the snapshot, then a C loop calling each bound ``update`` with no lock held.

Why the read is protected. On a free-threaded build a ``cdef object`` field is a bare pointer:
if thread A loads ``self._updates`` while thread B replaces it, B's decref can free the old tuple
before A's incref lands (a use-after-free). Every read and every write of ``_observers`` and
``_updates`` therefore happens inside ``cython.critical_section(self)``, the per-object mutex
CPython uses for its own containers (a no-op on GIL builds). The section covers only the pointer
copy and incref, never a call into user code, so an observer that subscribes from ``update``
cannot deadlock. Writers also take ``_lock`` (a ``threading.Lock``) to make
read-modify-write of the tuples atomic without calling ``__eq__`` or ``repr`` inside a critical
section.
"""

cimport cython
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

import threading

from notipipe._publisher_py import log_observer_error

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
    """

    cdef object _lock
    cdef tuple _observers
    cdef tuple _updates
    cdef object _error_handler
    cdef Py_ssize_t _failures
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        # Accepts (and ignores) the arguments of a subclass's __init__, e.g. DatabaseConnection(path=...).
        self._lock = threading.Lock()
        self._observers = ()
        self._updates = ()
        self._error_handler = log_observer_error
        self._failures = 0

    def __class_getitem__(cls, item):
        # Publisher[str] at run time, as for the generic pure twin.
        return cls

    # -- snapshot access: the only places the two tuple fields are touched -------------------

    cdef inline tuple _read_updates(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._updates
        return snapshot

    cdef inline tuple _read_observers(self):
        cdef tuple snapshot
        with cython.critical_section(self):
            snapshot = self._observers
        return snapshot

    cdef inline void _publish(self, tuple observers, tuple updates):
        with cython.critical_section(self):
            self._observers = observers
            self._updates = updates

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, observer, /):
        """Add ``observer``; return False (and change nothing) if it is already subscribed.

        Identity, not equality, decides "already": each object receives a message once.
        Raises TypeError if ``observer`` has no callable ``update``.
        """
        update = _bound_update(observer)
        cdef tuple observers
        with self._lock:
            observers = self._read_observers()
            for o in observers:
                if o is observer:
                    return False
            self._publish(observers + (observer,), self._read_updates() + (update,))
        return True

    def unsubscribe(self, observer, /):
        """Remove ``observer``; return False if it was not subscribed (nothing to remove)."""
        cdef tuple observers, updates
        cdef Py_ssize_t i
        with self._lock:
            observers = self._read_observers()
            for i in range(len(observers)):
                if observers[i] is observer:
                    updates = self._read_updates()
                    self._publish(observers[:i] + observers[i + 1:], updates[:i] + updates[i + 1:])
                    return True
        return False

    @property
    def observers(self):
        """The current subscribers, in subscription order (a snapshot)."""
        return self._read_observers()

    # -- delivery ------------------------------------------------------------------------------

    cdef inline void _deliver(self, tuple updates, object message):
        cdef Py_ssize_t i, n = PyTuple_GET_SIZE(updates)
        for i in range(n):
            # Borrowed from the snapshot tuple, which our local reference keeps alive.
            update = <object>PyTuple_GET_ITEM(updates, i)
            try:
                update(message)
            except Exception as error:
                self._report(update, message, error)

    def notify_all(self, message, /):
        """Deliver ``message`` to every observer subscribed when the call starts."""
        self._deliver(self._read_updates(), message)

    def notify_many(self, messages, /):
        """Deliver each message in turn to every observer; return how many messages were sent.

        The whole batch goes to the snapshot taken when the call starts.
        """
        cdef tuple updates = self._read_updates()
        cdef Py_ssize_t count = 0
        for message in messages:
            count += 1
            self._deliver(updates, message)
        return count

    # -- failures ------------------------------------------------------------------------------

    @property
    def failures(self):
        """How many ``update`` calls have raised since this publisher was created."""
        with cython.critical_section(self):
            return self._failures

    @property
    def error_handler(self):
        """Called as ``handler(observer, message, error)`` for each failing ``update``."""
        with cython.critical_section(self):
            return self._error_handler

    @error_handler.setter
    def error_handler(self, handler):
        if not callable(handler):
            raise TypeError(f"error_handler must be callable, got {handler!r}")
        with cython.critical_section(self):
            self._error_handler = handler

    cdef void _report(self, object update, object message, Exception error):
        # Off the hot path: only failing deliveries get here.
        with cython.critical_section(self):
            self._failures += 1
            handler = self._error_handler
        observer = getattr(update, "__self__", update)
        try:
            handler(observer, message, error)
        except Exception as handler_error:
            log_observer_error(observer, message, error)
            import logging
            logging.getLogger("notipipe").error("error handler %r failed: %r", handler, handler_error)
