# cython: language_level=3, freethreading_compatible=True
"""Compiled batch checks: the twin of ``_batch_py.py`` (the type truth), the same answers and
errors.

``all_of_types`` walks the list in C and looks a type up in the set only when it differs from
the item before's (a batch of alerts holds a few types, often in runs).
"""

__all__ = ["all_of_types"]


def all_of_types(items, types):
    """Whether every item's type is one of ``types``: see ``_batch_py.all_of_types``."""
    if type(items) is not list:
        raise TypeError(f"items must be a list, got {type(items).__name__}")
    if type(types) is not frozenset:
        raise TypeError(f"types must be a frozenset, got {type(types).__name__}")
    cdef object last = None
    cdef object cls
    for item in <list>items:  # a reference to each item: safe while another thread changes it
        cls = type(item)
        if cls is last:
            continue
        if cls not in <frozenset>types:
            return False
        last = cls
    return True
