"""notipipe: a thread-safe notification pipeline for (free-threaded) CPython.

The three patterns:

* ``DatabaseConnection``: the process-wide publisher, a singleton by ``ThreadSafeSingletonMeta``;
* ``MessageFactory.create_message("email" | "sms", ...)``: frozen, slotted messages;
* ``Observer``: a protocol; anything with ``update(message)`` can subscribe (``AsyncObserver``:
  ``async def update``, awaited on an asyncio loop; ``update_many(messages)`` takes batches).

``COMPILED`` tells whether the Cython hot path is in use (``NOTIPIPE_NO_EXTENSIONS=1`` forces
the pure-Python twins, which behave identically).
"""

from __future__ import annotations

from notipipe._async import AsyncObserverError, LoopClosedError
from notipipe._database import DatabaseConnection
from notipipe._factory import EmailFields, MessageFactory, SMSFields
from notipipe._messages_py import DEFAULT_PRIORITY, MAX_PRIORITY, MAX_SMS_BODY, MAX_SUBJECT, MIN_PRIORITY
from notipipe._protocols import AsyncObserver, ErrorHandler, Message, Observer, Overflow
from notipipe._publisher_py import log_observer_error
from notipipe._select import COMPILED, EmailMessage, Publisher, SMSMessage
from notipipe._singleton import ThreadSafeSingletonMeta

__version__ = "0.1.0"

__all__ = [
    "COMPILED",
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "AsyncObserver",
    "AsyncObserverError",
    "DatabaseConnection",
    "EmailFields",
    "EmailMessage",
    "ErrorHandler",
    "LoopClosedError",
    "Message",
    "MessageFactory",
    "Observer",
    "Overflow",
    "Publisher",
    "SMSFields",
    "SMSMessage",
    "ThreadSafeSingletonMeta",
    "__version__",
    "log_observer_error",
]
