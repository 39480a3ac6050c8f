"""The argparse value types of the commands' options: each refuses a bad value with one line."""

from __future__ import annotations

import argparse
import datetime
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

#: SQLite's largest integer: no row count, row id or LIMIT goes past it.
MAX_ROWS = 2**63 - 1
#: The longest ``max_delay`` that ``DatabaseConnection`` accepts.
MAX_DELAY = 60.0
#: More producer threads than this only measure the scheduler.
MAX_THREADS = 1024
#: Alerts per ``save_many`` call or per commit: past this a batch only costs memory.
MAX_BATCH = 1_000_000


def _echo(text: str) -> str:
    """A bad value as an error message quotes it: without the blanks around it and, when long,
    only its start."""
    text = text.strip()
    return text if len(text) <= 40 else text[:40] + "..."


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in ``low..high`` (``1_000`` allowed)."""

    def whole(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            number = text.strip().replace("_", "")
            digits = number[1:] if number.startswith(("+", "-")) else number
            if not digits.isdecimal():
                raise argparse.ArgumentTypeError(f"{_echo(text)!r} is not a whole number") from None
            # All digits, yet refused: more of them than int() converts, far out of range.
            value = low - 1 if number.startswith("-") else high + 1
        if value < 0 <= low:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is negative")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{_echo(text)} is too large (at most {high:,})")
        return value

    return whole


def seconds(text: str) -> float:
    """An argparse type: a delay in ``0..MAX_DELAY`` seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_echo(text)!r} is not a number") from None
    if not 0 <= value <= MAX_DELAY:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{_echo(text)} is not between 0 and {MAX_DELAY:g} seconds")
    return value


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def moment(text: str) -> float:
    """An argparse type: a Unix time given as an age (``90s``, ``10m``, ``2h``, ``7d``, ``2w``:
    that long ago) or an ISO 8601 time (``2026-12-07T09:30``; local time unless it gives its
    zone)."""
    if age := _AGE.fullmatch(text.strip()):
        return time.time() - float(age[1]) * _AGE_UNITS[age[2]]
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{_echo(text)!r} is neither an age (90s, 10m, 2h, 7d, 2w) nor an ISO time (2026-12-07T09:30)"
        ) from None
    value = when.timestamp()  # a naive time is local, as a person at this terminal means it
    if value < 0:
        raise argparse.ArgumentTypeError(f"{_echo(text)} is before 1970")
    return value


@dataclass(frozen=True, slots=True)
class ResetTo:
    """Where ``subscriptions --reset`` moves a name: after an alert's id, or to a time."""

    to_id: int | None = None
    since: float | None = None


def id_or_moment(text: str) -> ResetTo:
    """An argparse type: an alert id (a whole number) or a time as ``moment`` takes it."""
    if text.strip().replace("_", "").isdecimal():
        return ResetTo(to_id=whole_number(0, MAX_ROWS)(text))
    try:
        return ResetTo(since=moment(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{_echo(text)!r} is neither an alert id, nor an age (90s, 10m, 2h, 7d, 2w), nor an ISO time"
            " (2026-12-07T09:30)"
        ) from None


def nonempty(text: str) -> str:
    """An argparse type: a path or host, which may not be empty."""
    # An empty --db would otherwise fall back to the default file without a word.
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def kind_mix(text: str) -> dict[str, float]:
    """An argparse type: ``email=W,sms=W``, relative weights of the two kinds."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in ("email", "sms"):
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: expected email=W or sms=W")
        try:
            w = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: {_echo(weight)!r} is not a number") from None
        if not 0 <= w < float("inf"):
            raise argparse.ArgumentTypeError(f"{_echo(part)!r}: weights must be finite and >= 0")
        weights[kind] = w
    total = sum(weights.values())
    if total <= 0:
        raise argparse.ArgumentTypeError("the weights add up to 0")
    if not math.isfinite(total):  # each share would come out as 0
        raise argparse.ArgumentTypeError("the weights add up to more than a float holds")
    return weights


def age(text: str) -> float:
    """An argparse type: a span of time as ``90s``, ``10m``, ``2h``, ``7d``, ``2w`` (or plain
    seconds), in seconds."""
    found = _AGE.fullmatch(text.strip())
    if found:
        return float(found[1]) * _AGE_UNITS[found[2]]
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_echo(text)!r} is not an age (90s, 10m, 2h, 7d, 2w)") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{_echo(text)} is not an age of 0 seconds or more")
    return value
