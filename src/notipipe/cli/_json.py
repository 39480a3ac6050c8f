"""``--json``: the objects the reading commands print, field names as docs/json.md lists them.

Each object is one line of JSON (JSON Lines), ASCII only: whatever the locale, and whatever a
stored value holds (a control character, an escape sequence, a lone surrogate from a path), a
line is valid JSON that no terminal interprets. The names are a promise to scripts (docs/json.md:
"Stability"); tests/test_cli_json.py holds the two together.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping

from notipipe import StoreStats, SubscriptionStatus, fields_of
from notipipe.cli._shown import Shown

__all__ = ["alert_object", "json_line", "print_json", "stats_object", "subscriptions_object", "utc"]


def utc(t: float | None) -> str | None:
    """``t`` (Unix seconds) as ISO 8601 UTC to the millisecond (``2026-12-07T09:30:01.250Z``), or
    None for an unknown time."""
    if t is None:
        return None
    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(value: object) -> object:
    """A field's value as JSON can hold it: numbers stay numbers; a float JSON has no word for
    (nan, inf) is null; a value of a type JSON lacks is its text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _value(v) for k, v in value.items()}
    return str(value)


def alert_object(m: Shown) -> dict[str, object]:
    """One stored alert of any kind: the common fields, and its kind's own under ``fields``."""
    return {
        "id": m.id,
        "kind": m.kind,
        "priority": m.priority,
        "created_at": m.created_at,
        "created_at_utc": utc(m.created_at),
        "fields": {name: _value(v) for name, v in fields_of(m).items()},
    }


def stats_object(st: StoreStats) -> dict[str, object]:
    """``notipipe stats``: what the database holds."""
    return {
        "database": st.path,
        "size_bytes": st.size_bytes,
        "total": st.total,
        "by_kind": dict(st.by_kind),
        "origins": [{"host": h, "processes": p, "alerts": n} for h, p, n in st.origins],
        "first_at": st.first_at,
        "first_at_utc": utc(st.first_at),
        "last_at": st.last_at,
        "last_at_utc": utc(st.last_at),
    }


def subscriptions_object(states: list[SubscriptionStatus]) -> dict[str, object]:
    """``notipipe subscriptions``: each durable name of the database."""
    return {
        "subscriptions": [
            {
                "name": s.name,
                "last_id": s.last_id,
                "lag": s.lag,
                "oldest_age": s.oldest_age,
                "holder": s.holder,
                "active": s.active,
                "pruned": s.pruned,
            }
            for s in states
        ]
    }


def json_line(obj: Mapping[str, object]) -> str:
    """``obj`` as one line of JSON, ASCII only."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def print_json(obj: Mapping[str, object]) -> None:
    """``obj`` as one line of JSON on stdout."""
    print(json_line(obj))
