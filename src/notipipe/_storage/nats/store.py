"""``NatsStore``: every accepted alert kept in a NATS JetStream stream, chunks of alerts per message.

The queue, the group commit, back-pressure and the reports are ``GroupCommitStore``'s, as for
SQLite and PostgreSQL. Here is what JetStream changes:

* The target is ``nats://[user:password@]host:port/STREAM[?options]``. The alerts go to the
  subject ``notipipe.<STREAM>`` of the stream ``STREAM``, which is created on first use if
  missing, with the URL's options as its limits:

  ``max_age`` (``45s``, ``30m``, ``12h``, ``7d``, ``2w``), ``max_bytes`` (``512MB``, ``10GB``:
  powers of 1024), ``max_msgs`` (chunks, not alerts), ``replicas``, ``retention``
  (``limits``/``interest``/``workqueue``), ``discard`` (``old``: the server drops the oldest
  chunks at a limit, as retention; ``new``: it refuses new ones, and ``flush`` reports it),
  ``duplicate_window`` (the de-duplication window, see below), ``storage`` (``file``/``memory``).

  An existing stream is used as it is, never changed; an option the URL gives that differs from
  the stream's setting is an error naming both.
* A batch is published as chunks (``codec``: at most ``MAX_CHUNK_ROWS`` alerts and the server's
  ``max_payload`` each), each encoded straight from the alerts (``encode_messages``: an e-mail's
  or SMS's fields are read, no row is built; ``to_rows`` gives any other item's), all at once,
  each with the header ``Nats-Msg-Id`` (a random prefix of this store and a counter) and
  ``Notipipe-Origin`` (host and process). The batch commits once the server acknowledged every
  chunk; meanwhile the writer encodes and publishes the next batches, those due, up to
  ``_window`` batches started in all (``GroupCommitStore._overlap``), and batches commit one at a
  time, in order: ``flush`` returns once every chunk saved before it is acknowledged. A chunk whose
  acknowledgement did not come is sent again with the same id, so the server stores it once even
  if it had stored it before: re-sends are de-duplicated within the stream's ``duplicate_window``
  (two minutes unless set), which bounds how late a re-send may come; an outage longer than it
  can store a chunk twice. A chunk that never reached the server before a reconnection, sent
  again, is stored after the chunks sent behind it: its alerts' ids are then above theirs.
* The server unreachable (down, restarting, JetStream not ready) is a *wait*: the connection
  reconnects forever, the writer keeps its batch and retries with backoff, producers block once
  the queue is full, ``flush(timeout)`` raises ``TimeoutError``, a warning is logged once the
  outage passes ``busy_timeout``.
* A stream limit reached with ``discard=new`` (``max_bytes``, ``max_msgs``), or the server's own
  store full: the server refuses the chunk; ``flush`` and waiting producers raise
  ``StorageError`` naming the limit, and the alerts stay queued and retried: notipipe discards
  nothing.
* An alert larger than the server's ``max_payload`` alone is refused alone, as a row a database
  refuses (reported by the next ``flush``).
* Ids: ``seq << 16 | position`` (``reader``): ordered as stored, resumable, an int64.
* Reads go to the stream (``reader``): ``last``/``after`` read the chunks they need; the counts,
  ``time_range`` and ``origins`` read the whole stream (one round trip per chunk: a large stream
  takes a while); ``size_bytes`` is the stream's byte count.

The connection runs on an asyncio loop of the store's own (``client``); reads and the writer
share it. nats-py is imported when a store is made.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Final, cast

from notipipe._errors import ConfigurationError, StorageClosedError, StorageError
from notipipe._limits import TIME_LIMIT
from notipipe._select import EmailMessage, SMSMessage
from notipipe._storage.group_commit import _MAX_ID, GroupCommitStore, Row, leak
from notipipe._storage.interface import DEFAULT_OPTIONS, StoreOptions
from notipipe._storage.nats.client import REQUEST_TIMEOUT, NatsClient, import_nats, parse_target
from notipipe._storage.nats.codec import CODEC
from notipipe._storage.nats.reader import (
    MAX_CHUNK_ROWS,
    ORIGIN_HEADER,
    Chunk,
    chunk_at,
    chunk_before,
    chunks_from,
    make_id,
    split_id,
)

__all__ = ["NatsStore"]

_log = logging.getLogger("notipipe")

#: Bytes of a message kept free for its headers (the id, the origin) under ``max_payload``.
_HEADER_ROOM: Final = 1024
#: JetStream error codes of a stream or account at a limit: 10077 maximum messages exceeded,
#: 10054 (bytes), 10047 insufficient resources (the server's store full), 10027/10028 account
#: limits. Matched by the server's description too ("maximum ... exceeded").
_LIMIT_CODES: Final = frozenset({10047, 10054, 10077, 10027, 10028})
#: Seconds the stream-limit error waits for the stream's current settings (then shows those read
#: at connect).
_LIMIT_INFO_TIMEOUT: Final = 2.0


def _contiguous(indexes: Sequence[int]) -> bool:
    """Whether increasing ``indexes`` are one run (``[5, 6, 7]``): then a slice stands for them."""
    return indexes[-1] - indexes[0] == len(indexes) - 1


class _StreamLimitError(Exception):
    """The server refused a chunk: the stream (or the server's store) is at a limit. Never raised
    to users as itself: the writer reports it as a ``StorageError`` with this text."""


@dataclass(slots=True)
class _Chunk:
    msg_id: str
    data: bytes
    indexes: Sequence[int]  # positions in the batch of the chunk's rows, in order
    seq: int | None = None  # the stream sequence once acknowledged
    ack: concurrent.futures.Future[Any] | None = None  # its publish, sent ahead (_start_write)


@dataclass(slots=True)
class _Attempt:
    """One batch across its attempts: its chunks keep their ids, acknowledged ones are not sent
    again."""

    rows: list[Row | None]
    chunks: list[_Chunk] = field(default_factory=list)
    refused: dict[int, BaseException] = field(default_factory=dict)  # when it was chunked


class NatsStore(GroupCommitStore):
    """A NATS JetStream-backed queue of messages with a group-committing writer thread (see the
    module's docstring). ``codec`` is the chunk codec twin (default: this process's)."""

    _table: ClassVar[str] = ""
    _param: ClassVar[str] = ""

    def __init__(
        self,
        url: str,
        to_rows: Callable[[list[object]], list[Row]],
        options: StoreOptions = DEFAULT_OPTIONS,
        *,
        on_commit: Callable[[list[Any], list[int]], object] | None = None,
        max_pending: int | None = None,
        codec: ModuleType | None = None,
    ) -> None:
        self._target = parse_target(url)
        self._nats = import_nats()
        self._codec = codec or CODEC
        self._client = NatsClient(self._target, f"notipipe {os.getpid()}@{socket.gethostname()}")
        self._prefix = uuid.uuid4().hex[:20]
        self._ids = itertools.count(1)
        self._attempts: dict[int, _Attempt] = {}  # by id(rows): this batch's, those started behind it
        self._origin = f"{socket.gethostname()} {os.getpid()}"
        super().__init__(url, to_rows, options, on_commit=on_commit, max_pending=max_pending)

    # -- the connection --------------------------------------------------------------------------

    def _connected(self) -> NatsClient:
        """The client, connected (it reconnects by itself afterwards)."""
        client = self._client
        if not client.connected:
            try:
                client.connect(REQUEST_TIMEOUT)
            except ConfigurationError as error:
                raise StorageError(self.path, str(error)) from None
        self._refuse_old_server(client)
        return client

    def _refuse_old_server(self, client: NatsClient) -> None:
        """A reconnection that reached a server too old: nothing is written or read there (the
        alerts stay queued, ``flush`` reports it) until a newer one is back."""
        refusal = client.refusal()
        if refusal is not None:
            raise StorageError(self.path, str(refusal))

    def _open_writer(self) -> None:
        """The first connection, made by the first save: an error at once if the server answers
        and cannot be used (too old, the stream's settings); if it cannot be reached, the writer
        connects later, waiting as for any outage."""
        try:
            self._connected()
        except StorageError:
            raise
        except Exception as error:  # noqa: BLE001 - sorted out below
            if not self._is_wait(error):
                raise StorageError(self.path, f"cannot connect: {self._describe(error)}") from None

    def _close_writer_conn(self) -> None:
        with self._write_lock:
            self._client.close()

    def _close_reader(self) -> None:
        pass  # the reads share the writer's connection, closed with it

    def _forget_connections(self) -> None:
        # In a forked child: the parent's loop thread is not there; keep its objects alive.
        leak(self._client)
        self._client = NatsClient(self._target, f"notipipe {os.getpid()}@{socket.gethostname()}")
        self._prefix = uuid.uuid4().hex[:20]
        self._attempts = {}

    # -- what counts as what ---------------------------------------------------------------------

    def _is_wait(self, error: BaseException) -> bool:
        """The server cannot be reached, is restarting, or JetStream is not ready yet."""
        errors = self._nats.errors
        waits = (
            TimeoutError,
            OSError,
            errors.ConnectionClosedError,
            errors.NoServersError,
            errors.NoRespondersError,
            errors.OutboundBufferLimitError,
            errors.StaleConnectionError,
            errors.ConnectionReconnectingError,
            self._nats.js.errors.ServiceUnavailableError,
        )
        return isinstance(error, waits)

    def _is_retryable(self, error: BaseException) -> bool:
        return isinstance(
            error,
            (self._nats.errors.Error, _StreamLimitError, StorageError, OSError, TimeoutError, MemoryError),
        ) or self._is_wait(error)

    def _probe(self, row: Row) -> BaseException | None:
        return None  # a stream takes any bytes: only an alert over max_payload is refused

    def _check_refusals(self, rows: list[Row | None], refused: dict[int, BaseException]) -> None:
        if refused:  # with nothing refused, not every row was: no need to look at each row
            super()._check_refusals(rows, refused)

    # -- the batch ---------------------------------------------------------------------------------

    def _rows(self, batch: list[object]) -> tuple[list[Row | None], dict[int, BaseException]]:
        # No rows: the batch's messages go to the codec as they are (_pack), so the "rows" the
        # writer hands to _start_write and _write are the messages; one whose row cannot be
        # built is refused alone there.
        return cast("list[Row | None]", batch), {}

    #: The writer publishes the next batches while this one's acknowledgements are awaited.
    _overlap: ClassVar[bool] = True
    _window: ClassVar[int] = 4

    def _start_write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> None:
        client = self._client
        if not client.connected:
            return  # the server was never reached: _write connects, and waits as for any outage
        try:
            attempt = self._attempt_for(rows, refused, client)
            for chunk in attempt.chunks:
                chunk.ack = self._send(client, chunk)
        except Exception:  # noqa: BLE001 - _write meets the same trouble and reports it
            pass

    def _write(self, rows: list[Row | None], refused: dict[int, BaseException]) -> list[int]:
        client = self._connected()
        attempt = self._attempt_for(rows, refused, client)
        refused.update(attempt.refused)
        in_flight = [
            (chunk, chunk.ack or self._send(client, chunk)) for chunk in attempt.chunks if chunk.seq is None
        ]
        for chunk, _ in in_flight:
            chunk.ack = None  # this attempt's: one that fails is sent again by the next
        try:
            self._await_acks(in_flight)
        except self._nats.js.errors.NoStreamResponseError:
            self._ensure_stream_again(client)  # there now (made again, or by another process)
            self._await_acks(
                [(chunk, self._send(client, chunk)) for chunk in attempt.chunks if chunk.seq is None]
            )
        del self._attempts[id(rows)]
        # The ids' one reader is on_commit (observers told after the commit): without it, no
        # int is made per alert.
        return self._ids_of(attempt, len(rows)) if self._on_commit is not None else []

    @staticmethod
    def _ids_of(attempt: _Attempt, n: int) -> list[int]:
        """The stored ids of a batch of ``n`` rows whose chunks are all acknowledged (0 for a
        refused row)."""
        ids = [0] * n
        for chunk in attempt.chunks:
            assert chunk.seq is not None
            base, first = make_id(chunk.seq, 0), chunk.indexes[0]
            if _contiguous(chunk.indexes):  # the usual case: a slice, not a loop over the rows
                ids[first : first + len(chunk.indexes)] = range(base, base + len(chunk.indexes))
            else:
                for position, index in enumerate(chunk.indexes):
                    ids[index] = base | position
        return ids

    def _ensure_stream_again(self, client: NatsClient) -> None:
        """No stream took a chunk: if the stream is gone (deleted by an operator, or the server
        restarted on an emptied store), make it again, so the queued alerts are stored rather than
        retried forever. Its sequence, and so the ids, start again from 1."""
        if not client.recreate_stream():
            return  # made again already (a chunk sent ahead failed the same way), or by another
        _log.error(
            "notipipe: %s: stream %s was missing: created again; ids start again from 1",
            self.path,
            self._target.stream,
        )

    def _attempt_for(
        self, rows: list[Row | None], refused: dict[int, BaseException], client: NatsClient
    ) -> _Attempt:
        """The batch's attempt: its chunks made (and their ids given) once, on the first call."""
        attempt = self._attempts.get(id(rows))
        if attempt is None or attempt.rows is not rows:
            before = dict(refused)
            attempt = _Attempt(rows, self._chunks(rows, refused, client.max_payload))
            attempt.refused = {i: e for i, e in refused.items() if i not in before}
            self._attempts[id(rows)] = attempt
        return attempt

    def _send(self, client: NatsClient, chunk: _Chunk) -> concurrent.futures.Future[Any]:
        return client.submit(lambda: self._publish(client, chunk))

    def _await_acks(self, in_flight: list[tuple[_Chunk, concurrent.futures.Future[Any]]]) -> None:
        """Wait for every acknowledgement (each publish times out by itself on the loop), noting
        each acknowledged chunk's sequence; raise the first failure once all are in."""
        deadline = time.monotonic() + REQUEST_TIMEOUT + 1
        failure: BaseException | None = None
        for i, (chunk, future) in enumerate(in_flight):
            try:
                chunk.seq = int(future.result(max(deadline - time.monotonic(), 0.0)).seq)
            except TimeoutError:
                if not future.done():  # the loop itself is stuck: give up on the rest too
                    for _, later in in_flight[i:]:
                        later.cancel()
                    raise
                failure = failure or TimeoutError("no acknowledgement")
            except Exception as error:  # noqa: BLE001 - the first one is raised below
                failure = failure or error
        if failure is not None:
            raise self._limit_error(failure) or failure

    async def _publish(self, client: NatsClient, chunk: _Chunk) -> Any:
        if not client.nc.is_connected:
            # Not buffered by nats-py for the next server: that one may be too old to write to.
            raise self._nats.errors.ConnectionReconnectingError()
        self._refuse_old_server(client)
        headers = {"Nats-Msg-Id": chunk.msg_id, ORIGIN_HEADER: self._origin}
        return await client.js.publish(
            client.target.subject,
            chunk.data,
            timeout=REQUEST_TIMEOUT,
            stream=client.target.stream,
            headers=headers,
        )

    def _limit_error(self, error: BaseException) -> _StreamLimitError | None:
        """A refusal for a limit, as an error naming it; None for other trouble."""
        if not isinstance(error, self._nats.js.errors.APIError):
            return None
        description = error.description or ""
        if error.err_code not in _LIMIT_CODES and "exceeded" not in description:
            return None
        config = self._stream_config_now()
        limits = ", ".join(
            f"{name}={getattr(config, name)}"
            for name in ("max_bytes", "max_msgs", "max_age")
            if getattr(config, name, None) not in (None, -1, 0)
        )
        discard = getattr(config, "discard", None)
        discard = getattr(discard, "value", discard)  # an enum, or the server's string
        return _StreamLimitError(
            f"stream {self._target.stream} refused a chunk: {description} (its limits: {limits or 'none'},"
            f" discard={discard}); nothing was discarded"
        )

    def _stream_config_now(self) -> Any:
        """The stream's settings as the server has them now (an operator may have changed them
        since the connection), best effort: those read at connect if the server does not say."""
        client = self._client
        try:
            return client.call(
                lambda: client.js.stream_info(client.target.stream), _LIMIT_INFO_TIMEOUT
            ).config
        except Exception:  # noqa: BLE001 - only the message's detail is at stake
            return client.config

    def _chunks(
        self, rows: list[Row | None], refused: dict[int, BaseException], max_payload: int
    ) -> list[_Chunk]:
        """The batch's rows as chunks, each with its message id; an unencodable row, or one too
        large for any message, is added to ``refused``."""
        limit = max(max_payload - _HEADER_ROOM, 1)
        given: Sequence[int] = range(len(rows))
        if refused:  # a row that could not be built (None) is in it: no need to look for Nones
            given = [i for i, row in enumerate(rows) if row is not None and i not in refused]
        chunks: list[_Chunk] = []
        for start in range(0, len(given), MAX_CHUNK_ROWS):
            self._pack(rows, given[start : start + MAX_CHUNK_ROWS], limit, refused, chunks)
        return chunks

    def _pack(
        self,
        rows: list[Row | None],
        indexes: Sequence[int],
        limit: int,
        refused: dict[int, BaseException],
        out: list[_Chunk],
    ) -> None:
        if not indexes:
            return
        try:
            if len(indexes) == len(rows):  # the whole batch in one chunk, the usual case
                given = rows
            elif _contiguous(indexes):
                given = rows[indexes[0] : indexes[-1] + 1]
            else:
                given = [rows[i] for i in indexes]
            data = self._codec.encode_messages(given, EmailMessage, SMSMessage, self._to_rows)
        except Exception as error:  # noqa: BLE001 - a row to_rows cannot build, or cannot encode
            if len(indexes) == 1:
                refused[indexes[0]] = error
                return
            data = b""
        else:
            if len(data) <= limit:
                out.append(_Chunk(f"{self._prefix}-{next(self._ids)}", data, indexes))
                return
            if len(indexes) == 1:
                refused[indexes[0]] = ValueError(
                    f"the alert takes {len(data)} bytes, more than the server's max_payload"
                    f" ({limit + _HEADER_ROOM} bytes, headers included) allows"
                )
                return
        half = len(indexes) // 2
        self._pack(rows, indexes[:half], limit, refused, out)
        self._pack(rows, indexes[half:], limit, refused, out)

    # -- reading -----------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        raise StorageError(self.path, "a NATS stream answers no SQL; use the store's read methods")

    def _reader_client(self) -> NatsClient:
        """The client, after what this process queued is committed (as every read waits)."""
        if self._closed:
            raise StorageClosedError(self.path)
        if self._writer is not None and not self._on_writer_thread():
            self._wait_for_queued()
        return self._connected()

    def _reading(self, read: Callable[[NatsClient], Any]) -> Any:
        try:
            client = self._reader_client()
        except (StorageError, StorageClosedError):
            raise
        except Exception as error:
            if isinstance(error, (self._nats.errors.Error, TimeoutError, OSError)):
                raise StorageError(self.path, f"cannot connect: {self._describe(error)}") from None
            raise
        try:
            return read(client)
        except (StorageError, StorageClosedError):
            raise
        except Exception as error:
            if isinstance(error, (self._nats.errors.Error, TimeoutError, OSError, ValueError)):
                raise StorageError(self.path, f"reading failed: {self._describe(error)}") from None
            raise

    def _chunks_of_stream(self, client: NatsClient, upto: int | None = None) -> Iterator[Chunk]:
        return chunks_from(client, 1, self._codec, upto=upto)

    def last(self, n: int) -> list[tuple[object, ...]]:
        def read(client: NatsClient) -> list[tuple[object, ...]]:
            state = client.state()
            found: list[tuple[object, ...]] = []
            seq = int(state.last_seq)
            while len(found) < n:
                chunk = chunk_before(client, seq, int(state.first_seq), self._codec)
                if chunk is None:
                    break
                found[:0] = chunk.stored()[-(n - len(found)) :]
                seq = chunk.seq - 1
            return found

        return list(self._reading(read)) if n > 0 else []

    def after(self, message_id: int, limit: int) -> list[tuple[object, ...]]:
        def read(client: NatsClient) -> list[tuple[object, ...]]:
            seq, position = split_id(max(message_id, 0))
            found: list[tuple[object, ...]] = []
            if seq:
                chunk = chunk_at(client, seq, self._codec, following=False)
                if chunk is not None:
                    found += chunk.stored(position)[:limit]
            for chunk in chunks_from(client, seq + 1, self._codec):
                if len(found) >= limit:
                    break
                found += chunk.stored()[: limit - len(found)]
            return found

        return list(self._reading(read)) if limit > 0 else []

    def count_by_kind_and_priority(self, upto_id: int | None) -> dict[tuple[str, int], int]:
        upto = _MAX_ID if upto_id is None else upto_id

        def read(client: NatsClient) -> dict[tuple[str, int], int]:
            counts: dict[tuple[str, int], int] = {}
            for chunk in self._chunks_of_stream(client, split_id(upto)[0]):
                for row in chunk.stored():
                    if int(row[0]) <= upto:  # type: ignore[call-overload]
                        key = (str(row[1]), int(row[3]))  # type: ignore[call-overload]
                        counts[key] = counts.get(key, 0) + 1
            return dict(sorted(counts.items()))

        return dict(self._reading(read))

    def count_between(self, after_id: int, upto_id: int) -> int:
        # Ids are ``seq << 16 | position``: far apart across chunks, so the alerts are counted,
        # chunk by chunk, never taken as the ids' difference.
        def read(client: NatsClient) -> int:
            first, last = max(split_id(after_id)[0], 1), split_id(upto_id)[0]
            return sum(
                1
                for chunk in chunks_from(client, first, self._codec, upto=last)
                for position in range(len(chunk.rows))
                if after_id < make_id(chunk.seq, position) <= upto_id
            )

        if upto_id <= after_id:
            return 0
        return int(self._reading(read))

    def count_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for (kind, _), n in self.count_by_kind_and_priority(None).items():
            counts[kind] = counts.get(kind, 0) + n
        return dict(sorted(counts.items()))

    def count_by_priority(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for (_, priority), n in self.count_by_kind_and_priority(None).items():
            counts[priority] = counts.get(priority, 0) + n
        return dict(sorted(counts.items()))

    def time_range(self) -> tuple[float | None, float | None]:
        def read(client: NatsClient) -> tuple[float | None, float | None]:
            first: float | None = None
            last: float | None = None
            for chunk in self._chunks_of_stream(client):
                for row in chunk.rows:
                    at = row[1]
                    if 0 <= at < TIME_LIMIT:
                        first = at if first is None else min(first, at)
                        last = at if last is None else max(last, at)
            return first, last

        first, last = self._reading(read)
        return first, last

    def size_bytes(self) -> int:
        return int(self._reading(lambda client: int(client.state().bytes)))

    def origins(self) -> list[tuple[str, int, int]]:
        def read(client: NatsClient) -> list[tuple[str, int, int]]:
            hosts: dict[str, tuple[set[str], int]] = {}
            for chunk in self._chunks_of_stream(client):
                if chunk.error is not None:
                    continue  # another tool's message: no notipipe origin
                host, _, pid = chunk.origin.rpartition(" ")
                pids, n = hosts.get(host, (set(), 0))
                pids.add(pid)
                hosts[host] = (pids, n + len(chunk.rows))
            return [(host, len(pids), n) for host, (pids, n) in sorted(hosts.items())]

        return list(self._reading(read))
