"""What a prune asks of a backend (``Backend.prune``): the cutoff, and how to go about it.

Every backend deletes in small steps, each its own transaction (or purge), so that writers,
followers and durable subscribers keep going: a writer waits at most for one step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["PRUNE_STEP", "PruneRequest"]

#: Alerts deleted per transaction: small enough that a writer on SQLite waits at most for one
#: step, and PostgreSQL holds no long lock.
PRUNE_STEP: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneRequest:
    #: A Unix time: alerts created before it go, none created at it or later.
    before: float
    #: Only alerts every durable name has already been delivered (where the backend keeps names).
    keep_undelivered: bool = False
    #: Count what would go, delete nothing.
    dry_run: bool = False
    #: Alerts per transaction.
    step: int = PRUNE_STEP
    #: Called with the running total after each step (on the pruning thread, no lock held).
    progress: Callable[[int], object] | None = None

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done)
