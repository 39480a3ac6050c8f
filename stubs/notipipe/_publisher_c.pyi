# Stubs for the compiled fan-out; kept honest by `python -m mypy.stubtest notipipe`.
# The annotated pure twin, notipipe/_publisher_py.py, is the type truth these mirror.
import asyncio
from collections.abc import Callable, Iterable

from typing_extensions import disjoint_base

from notipipe._failures import ObserverFailures
from notipipe._protocols import AsyncObserver, ErrorHandler, Observer, Overflow
from notipipe._publisher_py import log_observer_error as log_observer_error

__all__ = ["Publisher", "log_observer_error"]

@disjoint_base
class Publisher[T]:
    def subscribe(
        self,
        observer: Observer[T] | AsyncObserver[T],
        /,
        *,
        weak: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        queue_size: int = 1024,
        overflow: Overflow = "wait",
    ) -> bool: ...
    def _reinit_locks_after_fork(self) -> None: ...
    def _purge_dead(self) -> None: ...
    def unsubscribe(self, observer: Observer[T] | AsyncObserver[T], /) -> bool: ...
    def dropped(self, observer: Observer[T] | AsyncObserver[T], /) -> int: ...
    def _observer_counts(self) -> tuple[int, tuple[tuple[ObserverFailures, object, int, int], ...]]: ...
    @property
    def observers(self) -> tuple[Observer[T] | AsyncObserver[T], ...]: ...
    @property
    def notify_all(self) -> Callable[[T], None]: ...
    @property
    def notify_many(self) -> Callable[[Iterable[T]], int]: ...
    @property
    def failures(self) -> int: ...
    @property
    def error_handler(self) -> ErrorHandler: ...
    @error_handler.setter
    def error_handler(self, handler: ErrorHandler) -> None: ...
