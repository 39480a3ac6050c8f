"""Both twins side by side, each assembled the way the package assembles the selected one.

The package imports one twin (``_select``); the tests and the benchmarks need both in one
process, each with its own message classes, publisher, message factory and a
``DatabaseConnection`` built on them. ``load("c")`` / ``load("py")`` builds that set once, here,
so that the tests and the benchmarks measure the same assembly. The twin the package selected
is returned with the public classes themselves, so that its ``DatabaseConnection`` singleton is
the one users get.

The pure modules are the type truth: a compiled twin is typed as its pure counterpart.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import notipipe
from notipipe import _messages_py, _publisher_py
from notipipe._database import DatabaseConnection, DatabaseCore
from notipipe._factory import MessageFactory
from notipipe._select import NO_EXTENSIONS
from notipipe._singleton import ThreadSafeSingletonMeta

__all__ = ["LABELS", "Twin", "TwinName", "available", "load"]

type TwinName = Literal["c", "py"]

# The names the benchmarks' tables use for each twin.
LABELS: dict[TwinName, str] = {"c": "compiled", "py": "pure"}


@dataclass(frozen=True)
class Twin:
    """One twin: its message classes, publisher, factory and a DatabaseConnection built on it."""

    name: TwinName
    EmailMessage: type[_messages_py.EmailMessage]
    SMSMessage: type[_messages_py.SMSMessage]
    Publisher: type[_publisher_py.Publisher[object]]
    MessageFactory: type[MessageFactory]
    DatabaseConnection: type[DatabaseConnection]
    messages_module: ModuleType
    publisher_module: ModuleType

    @property
    def label(self) -> str:
        """``"compiled"`` or ``"pure"``."""
        return LABELS[self.name]


def available() -> list[TwinName]:
    """The twins this process can load: both where the extension is built and allowed."""
    if NO_EXTENSIONS:
        return ["py"]
    try:
        importlib.import_module("notipipe._messages_c")
        importlib.import_module("notipipe._publisher_c")
        importlib.import_module("notipipe._kinds_c")
    except ImportError:
        return ["py"]
    return ["c", "py"]


@functools.cache
def load(name: TwinName) -> Twin:
    """Import the twin ``name`` ("c" or "py") and assemble it; the same object on every call.

    Raises ImportError for ``"c"`` where the extension is not built.
    """
    if name not in LABELS:
        raise ValueError(f"no twin named {name!r}: expected 'c' or 'py'")
    messages = importlib.import_module(f"notipipe._messages_{name}")
    publisher = importlib.import_module(f"notipipe._publisher_{name}")
    database: type[DatabaseConnection]
    if messages.EmailMessage is notipipe.EmailMessage and publisher.Publisher is notipipe.Publisher:
        database = DatabaseConnection  # the public class itself
    else:
        namespace = {
            "__module__": __name__,
            "_email_cls": messages.EmailMessage,
            "_sms_cls": messages.SMSMessage,
        }
        database = ThreadSafeSingletonMeta(  # type: ignore[assignment]  # the same class, built here
            "DatabaseConnection", (DatabaseCore, publisher.Publisher), namespace
        )
    factory: type[MessageFactory] = type(f"MessageFactory_{name}", (MessageFactory,), {})
    factory._kinds = {"email": messages.EmailMessage, "sms": messages.SMSMessage}
    factory._install_kind = staticmethod(importlib.import_module(f"notipipe._kinds_{name}").install)
    return Twin(
        name,
        messages.EmailMessage,
        messages.SMSMessage,
        publisher.Publisher,
        factory,
        database,
        messages,
        publisher,
    )
