"""notipipe: a thread-safe notification pipeline for (free-threaded) CPython.

The three patterns:

* ``DatabaseConnection``: the process-wide publisher, a singleton by ``ThreadSafeSingletonMeta``;
* ``MessageFactory.create_message("email" | "sms", ...)``: frozen, slotted messages; new kinds
  are frozen slotted dataclasses (``BaseMessage`` holds the common fields) registered with
  ``@MessageFactory.register("push")``, stored and read back as the built-ins are
  (``StoredAlert``: a stored kind this process has not registered);
* ``Observer``: a protocol; anything with ``update(message)`` can subscribe (``AsyncObserver``:
  ``async def update``, awaited on an asyncio loop; ``update_many(messages)`` takes batches).

``DatabaseConnection`` also stores every alert it is given (``save``, ``flush``, ``stats()`` ->
``StoreStats``); notipipe's own errors derive from ``NotipipeError`` (``StorageError``,
``StorageClosedError``, ``ConfigurationError``, ``ReentrancyError``). ``describe_target(path)``
(``StorageTarget``) tells which backend a path or URL takes and what it offers, without opening
anything; ``DatabaseConnection.subscriptions()`` lists its durable names (``SubscriptionStatus``);
``DatabaseConnection.metrics()`` its counters and gauges (``Metrics``; ``notipipe.metrics``
exports them to Prometheus and OpenTelemetry);
``StoreOptions()`` holds the options' defaults. Everything documented is
importable from here; the underscored modules behind it are private and may move.

``COMPILED`` tells whether the Cython hot path is in use (``NOTIPIPE_NO_EXTENSIONS=1`` forces
the pure-Python twins, which behave identically).
"""

from notipipe._async import AsyncObserverError, LoopClosedError
from notipipe._database import DatabaseConnection, StoredMessage, StoreStats
from notipipe._errors import (
    AlertsPrunedError,
    ConfigurationError,
    NotipipeError,
    ReentrancyError,
    ServerTooOldError,
    StorageClosedError,
    StorageError,
    StreamMismatchError,
)
from notipipe._factory import EmailFields, MessageFactory, SMSFields
from notipipe._kinds import BaseMessage, StoredAlert, fields_of
from notipipe._limits import DEFAULT_PRIORITY, MAX_ID, MAX_PRIORITY, MAX_SMS_BODY, MAX_SUBJECT, MIN_PRIORITY
from notipipe._metrics import DurableLag, LatencyHistogram, Metrics, ObserverMetrics
from notipipe._protocols import AsyncObserver, ErrorHandler, Message, Observer, Overflow
from notipipe._publisher_py import log_observer_error
from notipipe._select import COMPILED, EmailMessage, Publisher, SMSMessage
from notipipe._singleton import ThreadSafeSingletonMeta
from notipipe._storage.interface import Delivery, StoreOptions, Synchronous
from notipipe._targets import StorageTarget, SubscriptionStatus, describe_target, known_targets
from notipipe._version import __version__

# The exceptions are raised to users, who import them from here: tracebacks and pickles name
# them where they are imported (``notipipe.StorageError``), not by the private module.
for _error in (
    AlertsPrunedError,
    AsyncObserverError,
    ConfigurationError,
    LoopClosedError,
    NotipipeError,
    ReentrancyError,
    ServerTooOldError,
    StorageClosedError,
    StorageError,
    StreamMismatchError,
):
    _error.__module__ = __name__
del _error

__all__ = [
    "COMPILED",
    "DEFAULT_PRIORITY",
    "MAX_ID",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "AlertsPrunedError",
    "AsyncObserver",
    "AsyncObserverError",
    "BaseMessage",
    "ConfigurationError",
    "DatabaseConnection",
    "Delivery",
    "DurableLag",
    "EmailFields",
    "EmailMessage",
    "ErrorHandler",
    "LatencyHistogram",
    "LoopClosedError",
    "Message",
    "MessageFactory",
    "Metrics",
    "NotipipeError",
    "Observer",
    "ObserverMetrics",
    "Overflow",
    "Publisher",
    "ReentrancyError",
    "SMSFields",
    "SMSMessage",
    "ServerTooOldError",
    "StorageClosedError",
    "StorageError",
    "StorageTarget",
    "StoreOptions",
    "StoreStats",
    "StoredAlert",
    "StoredMessage",
    "StreamMismatchError",
    "SubscriptionStatus",
    "Synchronous",
    "ThreadSafeSingletonMeta",
    "__version__",
    "describe_target",
    "fields_of",
    "known_targets",
    "log_observer_error",
]
