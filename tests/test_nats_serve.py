"""``notipipe serve --db nats://...``: the dashboard of a JetStream stream, whose ids follow the
stream's order, so a browser that reconnects with ``Last-Event-ID`` gets exactly the alerts after
that id: none missing, none repeated, from the middle of a chunk or at its end."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from tests._dashboard_procs import children, stop
from tests.conftest import Impl

pytestmark = [
    pytest.mark.system,
    pytest.mark.thread_unsafe(reason="starts notipipe serve and uses the DatabaseConnection singleton"),
]

TIMEOUT = 60.0


class _Events:
    """An open ``/events`` stream of a running ``notipipe serve``, read event by event."""

    def __init__(self, url: str, last_event_id: int) -> None:
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
        self.conn.request("GET", "/events", headers={"Last-Event-ID": str(last_event_id)})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("content-type") == "text/event-stream; charset=utf-8"
        self._buffer = b""

    def _event(self) -> dict[str, Any]:
        while b"\n\n" not in self._buffer:
            data = self.response.read1()
            assert data, "the stream ended"
            self._buffer += data
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        fields = dict(line.partition(": ")[::2] for line in block.decode().split("\n") if line[:1] != ":")
        return fields

    def ids_until(self, last: int) -> list[int]:
        """The alert ids the ``alerts`` events carry, in order, up to the event holding ``last``."""
        ids: list[int] = []
        while not ids or ids[-1] < last:
            event = self._event()
            if event.get("event") != "alerts":
                continue
            ranges = json.loads(event["data"])["ids"]
            got = [i for first, end in ranges for i in range(first, end + 1)]
            assert int(event["id"]) == got[-1]
            ids += got
        return ids

    def close(self) -> None:
        self.conn.close()


def _save(db: Any, impl: Impl, tag: str, n: int) -> list[int]:
    """``n`` alerts in one chunk; their ids."""
    db.save_many([impl.SMSMessage(body=f"{tag} {i}") for i in range(n)])
    db.flush()
    return [m.id for m in db.last(n)]


def test_serve_resumes_a_nats_stream_exactly_after_the_last_event_id(impl: Impl, nats_url: str) -> None:
    db = impl.DatabaseConnection(nats_url)
    a, b, c = (_save(db, impl, tag, 10) for tag in "abc")
    assert len({i >> 16 for i in a + b + c}) == 3, "one chunk each"
    with children() as kids:
        proc = kids.start("serve", "--db", nats_url, "--port", "0")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("notipipe serve: http://"), (line, proc.stderr.read() if proc.stderr else "")
        url = line.split()[2]

        first = _Events(url, a[4])  # from the middle of a chunk
        assert first.ids_until(c[-1]) == a[5:] + b + c
        d = _save(db, impl, "d", 10)  # stored while the browser is connected
        assert first.ids_until(d[-1]) == d
        first.close()

        at_chunk_end = _Events(url, b[-1])
        assert at_chunk_end.ids_until(d[-1]) == c + d
        at_chunk_end.close()

        mid = _Events(url, d[3])
        assert mid.ids_until(d[-1]) == d[4:]
        e = _save(db, impl, "e", 5)
        assert mid.ids_until(e[-1]) == e, "a live alert missing or repeated after a resume"
        mid.close()
        status, err = stop(proc)
        assert status == 130, err


def test_the_chart_s_past_counts_each_stored_alert_once_on_a_nats_stream(impl: Impl, nats_url: str) -> None:
    """The snapshot's alerts per second (the chart's first second, which ``Totals.load`` and
    ``snapshot`` both count) add up to the alerts stored, on a stream whose ids are
    ``seq << 16 | position`` (not one apart)."""
    from notipipe.cli.dashboard._feed import snapshot

    db = impl.DatabaseConnection(nats_url)
    now = time.time()
    made = [now - 30, now - 30, now - 20, now - 10]
    for tag, at in enumerate(made):  # one chunk each
        db.save_many([impl.SMSMessage(body=f"{tag} {i}", created_at=at) for i in range(3)])
        db.flush()
    _, frame = snapshot(db, now)
    data = json.loads(frame.decode().split("data: ", 1)[1])
    assert dict(map(tuple, data["seconds"])) == {int(now - 30): 6, int(now - 20): 3, int(now - 10): 3}
