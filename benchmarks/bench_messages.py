"""Messages: the cost of making a 5-field record, in ns and in bytes per object.

    python benchmarks/bench_messages.py [--quick]

A record of phone, body, priority, created_at and id, the strings shared, made by both twins'
``SMSMessage(...)`` and ``MessageFactory.create_message("sms", ...)``, against
``dataclass(slots=True)`` (the baseline), a frozen slotted dataclass, a NamedTuple and the peers
that are installed (msgspec ``Struct(gc=False)``, directly and through a factory function;
attrs ``frozen``). Bytes per object: tracemalloc over many objects held at once.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).parent))

from _common import BODY, PHONE, STAMP, Sizes, family_main, peer, race
from report import BASE_MESSAGE, FROZEN, MSGSPEC, MSGSPEC_FACTORY, messages_table

from notipipe._twins import Twin


@dataclass(slots=True)
class SlotsDC:
    phone_number: str
    body: str
    priority: int
    created_at: float
    id: int


@dataclass(slots=True, frozen=True)
class FrozenSlotsDC:
    phone_number: str
    body: str
    priority: int
    created_at: float
    id: int


class NT(NamedTuple):
    phone_number: str
    body: str
    priority: int
    created_at: float
    id: int


def message_makers(twin_list: list[Twin]) -> dict[str, Callable[[], object]]:
    """Makers of a 5-field record (phone, body, priority, created_at, id), strings shared."""
    makers: dict[str, Callable[[], object]] = {
        BASE_MESSAGE: lambda: SlotsDC(PHONE, BODY, 3, STAMP, 0),
        FROZEN: lambda: FrozenSlotsDC(PHONE, BODY, 3, STAMP, 0),
        "NamedTuple": lambda: NT(PHONE, BODY, 3, STAMP, 0),
    }
    for twin in twin_list:
        cls, create = twin.SMSMessage, twin.MessageFactory.create_message

        def direct(cls: Callable[..., object] = cls) -> object:
            return cls(PHONE, BODY, priority=3, created_at=STAMP, id=0)

        def through_factory(create: Callable[..., object] = create) -> object:
            return create("sms", phone_number=PHONE, body=BODY, priority=3, created_at=STAMP, id=0)

        makers[f"notipipe {twin.label} SMSMessage(...)"] = direct
        makers[f"notipipe {twin.label} create_message('sms', ...)"] = through_factory
    makers.update(_peers())
    return makers


def _peers() -> dict[str, Callable[[], object]]:
    makers: dict[str, Callable[[], object]] = {}
    try:
        msgspec = peer("msgspec")
        # The class statement ``class MsgspecStruct(msgspec.Struct, gc=False)`` spelled as a call,
        # so that the type checker need not see msgspec, an optional peer.
        msgspec_struct = msgspec.defstruct(
            "MsgspecStruct",
            [("phone_number", str), ("body", str), ("priority", int), ("created_at", float), ("id", int)],
            gc=False,
        )

        makers[MSGSPEC] = lambda: msgspec_struct(PHONE, BODY, 3, STAMP, 0)
        # The same keywords notipipe's call takes (its priority, created_at and id are keyword-only).
        makers["msgspec Struct(gc=False), keywords"] = lambda: msgspec_struct(
            PHONE, BODY, priority=3, created_at=STAMP, id=0
        )
        # create_message's peer: the same dispatch by kind name, written for msgspec records.
        msgspec_kinds: dict[str, Callable[..., object]] = {"sms": msgspec_struct}

        def msgspec_factory(kind: str, /, **fields: object) -> object:
            return msgspec_kinds[kind](**fields)

        makers[MSGSPEC_FACTORY] = lambda: msgspec_factory(
            "sms", phone_number=PHONE, body=BODY, priority=3, created_at=STAMP, id=0
        )
    except ImportError:
        pass
    try:
        attrs = peer("attrs")

        class AttrsFrozen:
            phone_number: str
            body: str
            priority: int
            created_at: float
            id: int

        # ``@attrs.frozen`` applied by a call: the class it returns is typed by no stub here.
        attrs_frozen = attrs.frozen(AttrsFrozen)
        makers["attrs frozen (slots)"] = lambda: attrs_frozen(PHONE, BODY, 3, STAMP, 0)
    except ImportError:
        pass
    return makers


def bytes_per_object(make: Callable[[], object], n: int) -> float:
    held: list[object] = [None] * n  # the list itself is allocated before tracing starts
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        held[i] = make()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return (after - before) / n


def measure(sizes: Sizes, twin_list: list[Twin]) -> dict[str, dict[str, float]]:
    """ns per object (creation) and bytes per object (tracemalloc), per maker."""
    makers = message_makers(twin_list)
    n = sizes.objects

    def timed(make: Callable[[], object]) -> Callable[[], object]:
        def loop() -> None:
            for _ in range(n):
                make()

        return loop

    seconds = race({name: timed(make) for name, make in makers.items()}, sizes.repeats)
    out: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        out[name] = {"ns": seconds[name] / n * 1e9, "bytes": bytes_per_object(make, sizes.memory_objects)}
    return out


if __name__ == "__main__":
    sys.exit(family_main(__doc__, measure, lambda result, sizes: messages_table(result, sizes.__dict__)))
