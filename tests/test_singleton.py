"""ThreadSafeSingletonMeta: one instance per class, __init__ once, safe under a thread storm."""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any, ClassVar

import pytest

from notipipe import ThreadSafeSingletonMeta
from tests._processes import wait_forked
from tests.conftest import Impl, drop
from tests.storm import singleton_storm

pytestmark = pytest.mark.twin


class Counted(metaclass=ThreadSafeSingletonMeta):
    inits: ClassVar[int] = 0

    def __init__(self) -> None:
        time.sleep(0.0005)  # widen the window a broken lock would leave open
        type(self).inits += 1


class UnlockedSingletonMeta(type):
    """The deliberately broken variant: check-then-create with no lock."""

    instances: ClassVar[dict[type, object]] = {}

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls not in UnlockedSingletonMeta.instances:
            UnlockedSingletonMeta.instances[cls] = super().__call__(*args, **kwargs)
        return UnlockedSingletonMeta.instances[cls]


class Broken(metaclass=UnlockedSingletonMeta):
    def __init__(self) -> None:
        time.sleep(0.0005)


@pytest.mark.thread_unsafe(reason="resets the module-level Counted singleton and its shared counter")
def test_storm_64_threads_one_instance_per_round() -> None:
    Counted.inits = 0
    bad, rounds = singleton_storm(Counted, Counted.reset_instance, threads=64, rounds=300)
    assert rounds == 300
    assert bad == 0
    assert Counted.inits == 300  # exactly one __init__ per round


@pytest.mark.thread_unsafe(reason="copies would reset each other's Broken instance: a catch must be its own")
def test_storm_catches_the_unlocked_variant() -> None:
    bad, rounds = singleton_storm(Broken, UnlockedSingletonMeta.instances.clear, rounds=20)
    assert rounds == 20
    assert bad > 0, "the storm failed to catch a singleton with no lock"


@pytest.mark.thread_unsafe(reason="resets the DatabaseConnection singleton its other copies use")
def test_storm_on_database_connection(impl: Impl) -> None:
    cls = impl.DatabaseConnection
    bad, rounds = singleton_storm(cls, lambda: drop(cls), threads=64, rounds=200)
    assert (bad, rounds) == (0, 200)


@pytest.mark.thread_unsafe(reason="drops the DatabaseConnection singleton its other copies use")
def test_init_runs_once_and_state_is_shared(impl: Impl) -> None:
    cls = impl.DatabaseConnection
    drop(cls)
    received: list[object] = []

    class Sink:
        def update(self, message: object) -> None:
            received.append(message)

    cls().subscribe(Sink())
    cls().notify_all("x")
    assert received == ["x"]
    assert len(cls().observers) == 1


def test_failed_init_publishes_nothing_and_next_call_retries() -> None:
    attempts: list[int] = []

    class Flaky(metaclass=ThreadSafeSingletonMeta):
        def __init__(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise OSError("disk not ready")

    with pytest.raises(OSError, match="disk not ready"):
        Flaky()
    assert not Flaky.instance_exists()
    first = Flaky()
    assert Flaky() is first
    assert len(attempts) == 2


def test_each_class_has_its_own_instance_and_subclasses_too() -> None:
    class A(metaclass=ThreadSafeSingletonMeta):
        pass

    class B(metaclass=ThreadSafeSingletonMeta):
        pass

    class C(A):
        pass

    assert A() is A()
    assert B() is B()
    assert C() is C()
    assert len({id(A()), id(B()), id(C())}) == 3


def test_singleton_creating_another_singleton_does_not_deadlock() -> None:
    class Inner(metaclass=ThreadSafeSingletonMeta):
        pass

    class Outer(metaclass=ThreadSafeSingletonMeta):
        def __init__(self) -> None:
            self.inner = Inner()

    result: list[Outer] = []
    t = threading.Thread(target=lambda: result.append(Outer()))
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "deadlock: nested singleton construction never finished"
    assert result[0].inner is Inner()


def test_recursive_construction_is_an_error_not_a_deadlock() -> None:
    class Selfish(metaclass=ThreadSafeSingletonMeta):
        def __init__(self) -> None:
            Selfish()

    with pytest.raises(RuntimeError, match=r"Selfish\(\) was called from its own __init__"):
        Selfish()
    assert not Selfish.instance_exists()


def test_arguments_after_creation_are_refused_without_a_checker() -> None:
    class Plain(metaclass=ThreadSafeSingletonMeta):
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert Plain(5).size == 5
    assert Plain().size == 5
    with pytest.raises(TypeError, match="Plain already exists"):
        Plain(6)


def test_reset_instance_returns_the_old_one() -> None:
    class R(metaclass=ThreadSafeSingletonMeta):
        pass

    assert R.reset_instance() is None
    first = R()
    assert R.reset_instance() is first
    assert R() is not first


@pytest.mark.forks
@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_child_process_does_not_inherit_a_held_lock() -> None:
    class Forked(metaclass=ThreadSafeSingletonMeta):
        pass

    lock = ThreadSafeSingletonMeta._locks[Forked]
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a multi-threaded process may deadlock: the very
            # hazard under test.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: the lock was held at fork time; a fresh one must be in place
            ok = isinstance(Forked(), Forked)
            os._exit(0 if ok else 1)
        code = wait_forked(pid, 10)
        if code is None:
            pytest.fail("the child deadlocked on the lock it inherited")
        assert code == 0
    finally:
        release.set()
        holder.join()
