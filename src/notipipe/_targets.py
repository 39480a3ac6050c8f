"""What notipipe makes of a database target, asked of the backend registry: ``describe_target``
(``StorageTarget``) and the durable names a database keeps (``SubscriptionStatus``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Self, cast

from notipipe import _storage
from notipipe._storage.backend import check_durable_name

if TYPE_CHECKING:
    from notipipe._storage.backend import Backend, SubscriptionInfo

__all__ = ["StorageTarget", "SubscriptionStatus", "describe_target", "known_targets", "resolve"]


def resolve(path: str | os.PathLike[str] | None) -> tuple[str, Backend]:
    """The target as connections compare it, and its backend: ``path``, else ``$NOTIPIPE_DB``,
    else ``":memory:"``. ``TypeError`` for an empty or non-str path, ``ConfigurationError`` for a
    URL of a scheme no backend takes."""
    if path is None:
        path = os.environ.get("NOTIPIPE_DB") or ":memory:"
    path = os.fspath(path)
    if not isinstance(cast("object", path), str) or not path:
        raise TypeError(f"path must be a non-empty str or os.PathLike, got {path!r}")
    backend = _storage.backend_for(path)
    return backend.normalize(path), backend


class _Resolved:
    """What a ``StorageTarget`` holds besides its fields: the target as given (a URL with its
    password) and its backend, kept out of the fields so that ``repr``, ``==``,
    ``dataclasses.asdict`` and ``copy`` never carry the password."""

    __slots__ = ("_backend_obj", "_target")
    _target: str
    _backend_obj: Backend


@dataclass(frozen=True, slots=True)
class StorageTarget(_Resolved):
    """A database target as its backend answers for it (``describe_target``,
    ``DatabaseConnection.target``). No field, repr or comparison holds a password; it cannot be
    pickled (it holds the password to connect with): pickle the path and ``describe_target`` it."""

    #: The backend's name: ``"sqlite"``, ``"postgresql"``.
    backend: str
    #: The target as messages show it: a file's absolute path, a URL without its password.
    shown: str
    #: The ``DatabaseConnection`` options this backend reads; the others must keep their defaults.
    options: frozenset[str]
    #: Seconds between a follower's reads when nothing wakes it (``tail --follow``'s poll).
    follow_poll: float
    #: Whether ids follow commit order, so that "every alert after id N" is exact (what a
    #: browser's resume by ``Last-Event-ID`` needs).
    ids_follow_commits: bool

    @classmethod
    def _of(cls, target: str, backend: Backend) -> StorageTarget:
        """The description of a resolved ``target`` (see ``resolve``)."""
        described = cls(
            backend.name,
            backend.shown(target),
            backend.options,
            backend.follow_poll,
            backend.ids_follow_commits,
        )
        object.__setattr__(described, "_target", target)
        object.__setattr__(described, "_backend_obj", backend)
        return described

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"a StorageTarget cannot be pickled (it holds the password to connect to {self.shown});"
            " pickle the path and call describe_target() with it"
        )

    def __copy__(self) -> Self:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Self:
        return self

    def exists(self) -> bool:
        """Whether reading the target can find alerts without creating anything first (False for
        a file not written yet; a server is asked on use)."""
        return self._backend_obj.exists(self._target)

    def subscriptions(self) -> list[SubscriptionStatus]:
        """Every durable name of the database, by name, with its position, lag and holder (no
        ``DatabaseConnection`` needed). ``ConfigurationError`` where the backend keeps no durable
        names (a SQLite file); ``StorageError`` if the server cannot be reached."""
        return [SubscriptionStatus._of(info) for info in self._backend_obj.subscriptions(self._target)]

    def delete_subscription(self, name: str, *, force: bool = False) -> bool:
        """Delete the durable name ``name``: its position is gone, and a later ``subscribe`` with
        it starts from then on. False if there is no such name.

        Refused (``StorageError`` naming the holder, ``pid@host``) while a process holds the
        name, unless ``force``: then the holder loses it at once (PostgreSQL ends its session,
        NATS deletes its consumer under it); a holder still subscribed makes the name again,
        delivering what is stored from then on, and logs it. ``ConfigurationError`` where the
        backend keeps no durable names (a SQLite file)."""
        check_durable_name(name)
        return self._backend_obj.delete_subscription(self._target, name, force=_flag(force))

    def reset_subscription(
        self, name: str, *, to_id: int | None = None, since: float | None = None, force: bool = False
    ) -> bool:
        """Move the durable name ``name``: its next delivery starts after the alert ``to_id``, or
        at the first alert of ``since`` (a Unix time); exactly one of them. Alerts are delivered
        again or skipped accordingly. False if there is no such name.

        As exact as the backend's ids allow: on PostgreSQL, where ids do not follow commits,
        every alert committed by the reset with an id up to ``to_id`` counts as delivered and
        every other one (committed later too, whatever its id) is delivered; ``since`` resets to
        the id before the first alert created then. On NATS a consumer delivers whole chunks:
        the alerts of ``to_id``'s chunk up to ``to_id`` are delivered again; ``since`` starts at
        the first chunk the server stored then. Held: as for ``delete_subscription`` (with
        ``force`` a running holder goes on from the reset position)."""
        check_durable_name(name)
        after_id, when = _reset_position(to_id, since)
        return self._backend_obj.reset_subscription(
            self._target, name, after_id=after_id, since=when, force=_flag(force)
        )


def _flag(force: object) -> bool:
    if not isinstance(force, bool):
        raise TypeError(f"force must be a bool, got {force!r}")
    return force


def _reset_position(to_id: object, since: object) -> tuple[int | None, float | None]:
    """``(to_id, since)`` checked: exactly one given, an id a whole number >= 0, a time finite."""
    if (to_id is None) == (since is None):
        raise TypeError("reset_subscription takes exactly one of to_id and since")
    if to_id is not None:
        if not isinstance(to_id, int) or isinstance(to_id, bool) or to_id < 0:
            raise ValueError(f"to_id must be an alert id (an int >= 0), got {to_id!r}")
        return to_id, None
    if not isinstance(since, int | float) or isinstance(since, bool) or not math.isfinite(since):
        raise ValueError(f"since must be a Unix time (a finite number), got {since!r}")
    return None, float(since)


def describe_target(path: str | os.PathLike[str] | None = None) -> StorageTarget:
    """What ``DatabaseConnection(path)`` would use, without opening anything: its backend, how it
    is shown, which options it reads, how it is followed. ``path`` as ``DatabaseConnection``
    takes it (default ``$NOTIPIPE_DB``, else ``":memory:"``); a URL of a scheme no backend takes
    raises ``ConfigurationError`` naming the known ones (``known_targets()``)."""
    return StorageTarget._of(*resolve(path))


def known_targets(*, durable: bool = False) -> str:
    """The targets the backends take, e.g. ``"postgresql://, postgres://, or a SQLite file path"``;
    with ``durable=True``, those of the backends that keep durable subscriptions."""
    return _storage.durable_targets() if durable else _storage.known_targets()


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """One durable name of a database (``DatabaseConnection.subscriptions()``)."""

    name: str
    #: The id of the last alert the name's observer acknowledged (0: none yet); None where ids
    #: do not follow commits (PostgreSQL), so that no one id marks the position.
    last_id: int | None
    #: Alerts stored and not yet acknowledged (None where the backend cannot count them cheaply).
    lag: int | None
    #: Seconds since the oldest unacknowledged alert was created, or None.
    oldest_age: float | None
    #: Who holds the name now (``pid@host`` on PostgreSQL), or None if no process does.
    holder: str | None
    #: Whether a process holds the name now.
    active: bool
    #: Alerts a prune deleted before they were delivered to the name (``DatabaseConnection.prune``),
    #: None where the backend does not count them.
    pruned: int | None = None

    @classmethod
    def _of(cls, info: SubscriptionInfo) -> SubscriptionStatus:
        # ``pruned`` is optional in a backend's listing: only some count pruned alerts.
        pruned = getattr(info, "pruned", None)
        return cls(info.name, info.last_id, info.lag, info.oldest_age, info.holder, info.active, pruned)
