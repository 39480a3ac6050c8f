"""``ThreadSafeSingletonMeta``: one instance per class, created once, safely, from any thread.

The work happens in the metaclass ``__call__``, which runs on every ``Cls()``. (A metaclass
``__new__`` would run when the *class* is created, once, at import; it never sees instance
creation. Putting singleton logic there is a common mistake.)

Double-checked locking: a lock-free dict read once the instance exists, and a per-class lock
around the slow path. The instance is published only after ``__init__`` has returned, so no
thread ever sees a half-initialised object; if ``__init__`` raises, nothing is published and the
next call tries again.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

__all__ = ["ThreadSafeSingletonMeta"]


class ThreadSafeSingletonMeta(type):
    """Metaclass: ``Cls()`` always returns the same instance; ``__init__`` runs once.

    Each class using it (subclasses included) has its own instance and its own lock, so a
    singleton whose ``__init__`` creates another singleton does not deadlock. A class calling
    itself from its own ``__init__`` gets a ``RuntimeError`` rather than a deadlock.

    Once the instance exists, calling ``Cls(...)`` with arguments asks the instance whether they
    match its configuration: a class may define ``_check_singleton_args(*args, **kwargs)`` to
    raise a clear error on a mismatch; without it, arguments on a later call are a TypeError.
    """

    # Plain dicts: a read of one key is atomic on every CPython, GIL or free-threaded.
    _instances: ClassVar[dict[type, object]] = {}
    _locks: ClassVar[dict[type, threading.Lock]] = {}
    _creating: ClassVar[dict[type, int]] = {}  # class -> thread id running its __init__

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], /) -> None:
        super().__init__(name, bases, namespace)
        ThreadSafeSingletonMeta._locks[cls] = threading.Lock()

    def __call__[T](cls: type[T], *args: Any, **kwargs: Any) -> T:
        # Typed through the class (type[T] -> T) so checkers see an instance, not Any.
        instance = ThreadSafeSingletonMeta._instances.get(cls)  # fast path: no lock
        if instance is None:
            instance = _create(cls, args, kwargs)
        elif args or kwargs:
            _check_args(cls, instance, args, kwargs)
        return instance  # type: ignore[return-value]  # the dict maps each class to its instance

    def reset_instance(cls) -> object | None:
        """Forget the instance (for tests and shutdown); return it, or None if there was none.

        The next ``Cls()`` builds a fresh one. Callers that hold the old instance keep it; close
        it if it owns resources.
        """
        with ThreadSafeSingletonMeta._locks[cls]:
            return ThreadSafeSingletonMeta._instances.pop(cls, None)

    def instance_exists(cls) -> bool:
        """True if ``Cls()`` would return an existing instance without building one."""
        return cls in ThreadSafeSingletonMeta._instances


def _create(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The slow path: build, initialise and publish the instance under the class's lock."""
    me = threading.get_ident()
    if ThreadSafeSingletonMeta._creating.get(cls) == me:
        raise RuntimeError(f"{cls.__name__}() was called from its own __init__")
    with ThreadSafeSingletonMeta._locks[cls]:
        instance = ThreadSafeSingletonMeta._instances.get(cls)  # second check, under the lock
        if instance is not None:
            if args or kwargs:
                _check_args(cls, instance, args, kwargs)
            return instance
        ThreadSafeSingletonMeta._creating[cls] = me
        try:
            instance = type.__call__(cls, *args, **kwargs)  # __new__ + __init__
        finally:
            del ThreadSafeSingletonMeta._creating[cls]
        ThreadSafeSingletonMeta._instances[cls] = instance  # publish only when complete
        return instance


def _check_args(cls: type, instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check = getattr(instance, "_check_singleton_args", None)
    if check is None:
        raise TypeError(f"{cls.__name__} already exists; it takes no arguments after the first call")
    check(*args, **kwargs)


def _reinit_locks_after_fork() -> None:
    # A fork copies a lock held by another thread as held forever: give the child fresh ones.
    for cls in ThreadSafeSingletonMeta._locks:
        ThreadSafeSingletonMeta._locks[cls] = threading.Lock()
    ThreadSafeSingletonMeta._creating.clear()


os.register_at_fork(after_in_child=_reinit_locks_after_fork)
