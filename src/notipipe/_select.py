"""Pick the compiled twins when they are built and allowed, the pure ones otherwise.

``NOTIPIPE_NO_EXTENSIONS`` set to anything but ``""``/``"0"`` forces pure Python, as does any
interpreter other than CPython. The pure modules are the type truth, so type checkers always see
them.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = [
    "COMPILED",
    "NO_EXTENSIONS",
    "EmailMessage",
    "Publisher",
    "SMSMessage",
    "all_of_types",
    "install_kind",
    "kind_rows",
    "twin",
]

NO_EXTENSIONS: bool = (
    os.environ.get("NOTIPIPE_NO_EXTENSIONS", "") not in ("", "0") or sys.implementation.name != "cpython"
)

if TYPE_CHECKING:
    from notipipe._batch_py import all_of_types
    from notipipe._kinds_py import install as install_kind
    from notipipe._kinds_py import rows as kind_rows
    from notipipe._messages_py import EmailMessage, SMSMessage
    from notipipe._publisher_py import Publisher

    COMPILED: bool
elif NO_EXTENSIONS:
    from notipipe._batch_py import all_of_types
    from notipipe._kinds_py import install as install_kind
    from notipipe._kinds_py import rows as kind_rows
    from notipipe._messages_py import EmailMessage, SMSMessage
    from notipipe._publisher_py import Publisher

    COMPILED = False
else:
    try:
        from notipipe._batch_c import all_of_types
        from notipipe._kinds_c import install as install_kind
        from notipipe._kinds_c import rows as kind_rows
        from notipipe._messages_c import EmailMessage, SMSMessage
        from notipipe._publisher_c import Publisher
    except ImportError:  # not built here (e.g. a source checkout): the twins behave the same
        from notipipe._batch_py import all_of_types
        from notipipe._kinds_py import install as install_kind
        from notipipe._kinds_py import rows as kind_rows
        from notipipe._messages_py import EmailMessage, SMSMessage
        from notipipe._publisher_py import Publisher

        COMPILED = False
    else:
        COMPILED = True


def twin(pure: ModuleType, name: str | None = None) -> ModuleType:
    """The twin ``name`` ("c" or "py") of the pure module ``pure`` (``notipipe._x_py``; its
    compiled twin is ``notipipe._x_c``); by default the one this process selects, as above."""
    if name == "py" or (name is None and NO_EXTENSIONS):
        return pure
    try:
        return importlib.import_module(pure.__name__.removesuffix("_py") + "_c")
    except ImportError:
        if name == "c":
            raise
        return pure
