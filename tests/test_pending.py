"""``Pending``: the writer's queue keeps the producers' lists and gives them back in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe._storage.pending import Pending

pytestmark = pytest.mark.system

#: A step: ("put", n) queues n messages one by one, ("many", n) a list of n, ("take", n) takes
#: up to n, ("back", n) takes up to n and gives them back to the front.
_STEP = st.tuples(st.sampled_from(["put", "many", "take", "back"]), st.integers(min_value=0, max_value=12))


@given(steps=st.lists(_STEP, max_size=40), small=st.integers(min_value=1, max_value=5))
def test_messages_come_out_in_the_order_they_went_in(steps: list[tuple[str, int]], small: int) -> None:
    pending = Pending[int](small)
    model: list[int] = []  # the queue as a plain list
    taken: list[int] = []
    counter = iter(range(10**6))
    for op, n in steps:
        if op == "put":
            for _ in range(n):
                message = next(counter)
                pending.append(message)
                model.append(message)
        elif op == "many":
            batch = [next(counter) for _ in range(n)]
            pending.extend(list(batch))
            model += batch
        else:
            got = pending.take(n)
            assert got == model[:n]
            if op == "back":
                pending.push_front(got)
            else:
                del model[:n]
                taken += got
        assert len(pending) == len(model)
        assert bool(pending) == bool(model)
    assert pending.take(len(model) + 1) == model
    assert not pending


def test_a_batch_taken_is_the_callers_and_the_queue_keeps_its_own() -> None:
    pending = Pending[int](10)
    first = [1, 2, 3]
    pending.extend(first)
    pending.extend([4, 5])
    batch = pending.take(4)
    batch.append(99)  # the caller's list: the queue does not see it
    pending.append(6)
    assert pending.take(10) == [5, 6]
    assert len(pending) == 0


def test_put_adds_to_a_small_list_only() -> None:
    # put() adds to the last list while it is small; a producer's large list stays as given.
    pending = Pending[int](2)
    big = list(range(5))
    pending.extend(big)
    pending.append(5)
    assert big == [0, 1, 2, 3, 4]
    assert pending.take(3) == [0, 1, 2]
    pending.append(6)
    pending.append(7)
    assert pending.take(10) == [3, 4, 5, 6, 7]
