"""The batch check's twins (``_batch_c``, ``_batch_py``): the same answers."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notipipe import _batch_py
from notipipe._twins import available

pytestmark = pytest.mark.twin


@pytest.fixture(params=available())
def twin(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(f"notipipe._batch_{request.param}")


class _Int(int):
    """A subclass of an allowed type: not allowed itself."""


_ITEMS = st.lists(st.sampled_from([1, 2, "a", b"b", 1.5, None, _Int(3), True]), max_size=30)
_TYPES = st.frozensets(st.sampled_from([int, str, bytes, float, type(None), bool]))


@given(items=_ITEMS, types=_TYPES)
def test_all_of_types_answers_alike(items: list[Any], types: frozenset[type]) -> None:
    expected = all(type(item) in types for item in items)
    for name in available():
        module = importlib.import_module(f"notipipe._batch_{name}")
        assert module.all_of_types(items, types) is expected, name


def test_all_of_types_takes_exact_types(twin: ModuleType) -> None:
    assert twin.all_of_types([], frozenset())
    assert twin.all_of_types([1, 2, 3], frozenset({int}))
    assert not twin.all_of_types([1, _Int(2)], frozenset({int}))
    assert not twin.all_of_types([1, True], frozenset({int}))
    assert twin.all_of_types([1, "a", 2, "b"], frozenset({int, str}))


@pytest.mark.parametrize(
    ("items", "types", "message"),
    [
        ((1,), frozenset({int}), "items must be a list, got tuple"),
        ([1], {int}, "types must be a frozenset, got set"),
        (None, None, "items must be a list, got NoneType"),
    ],
)
def test_all_of_types_refuses_other_containers_alike(
    twin: ModuleType, items: Any, types: Any, message: str
) -> None:
    with pytest.raises(TypeError) as raised:
        twin.all_of_types(items, types)
    with pytest.raises(TypeError) as pure:
        _batch_py.all_of_types(items, types)
    assert str(raised.value) == str(pure.value) == message
