"""Browsers that never read, and a writer of e-mails with 1 KiB bodies, for ``notipipe serve``.

A stuck client is a raw socket with a tiny receive buffer that asks for ``/events`` and then
reads nothing, as a laptop asleep with its connection open. The writer saves e-mails with
1 KiB bodies until it is killed: ``python -m tests._stuck_clients write DB``. Used by
``tests/test_dashboard.py`` and by ``benchmarks/bench_dashboard_stuck.py`` (the server's memory
with 1 and 50 stuck clients); only the public API, so the benchmark runs on any version.
"""

from __future__ import annotations

import select
import socket

from tests._processes import Programs, say

__all__ = ["BODY", "hung_up", "read_to_the_end", "stuck_client"]

program = Programs()

#: The body of every e-mail the writer saves: 1 KiB.
BODY = "x" * 1024
#: The receive buffer a stuck client asks for (the kernel makes it a little larger).
RECEIVE_BUFFER = 1024


def stuck_client(
    host: str,
    port: int,
    *,
    last_event_id: int | None = None,
    forwarded_for: str | None = None,
    receive_buffer: int | None = RECEIVE_BUFFER,
) -> socket.socket:
    """A connection that has asked for the event stream and will read nothing.

    HTTP/1.0, so that what it receives is the event stream itself (no chunked framing), for a
    test to read it once the server has cut it off. ``forwarded_for``: sent as
    ``X-Forwarded-For``, as a client may, claiming to be another. ``receive_buffer`` ``None``:
    the kernel's own, for a client that does read.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connecting
    sock.connect((host, port))
    headers = f"Host: {host}:{port}\r\n"
    if last_event_id is not None:
        headers += f"Last-Event-ID: {last_event_id}\r\n"
    if forwarded_for is not None:
        headers += f"X-Forwarded-For: {forwarded_for}\r\n"
    sock.sendall(f"GET /events HTTP/1.0\r\n{headers}\r\n".encode())
    return sock


def hung_up(sock: socket.socket) -> bool:
    """Whether the server has cut ``sock`` off, seen without reading it: a polite close cannot
    reach a client that reads nothing (its FIN waits behind the data), a reset does."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poll.poll(0))


def read_to_the_end(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything ``sock`` receives until the server closes it: ``(data, True)``; ``(data,
    False)`` if it is still open after ``timeout`` seconds without a byte."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return bytes(data), False
    except ConnectionResetError:  # cut off: what was received before the reset is above
        pass
    return bytes(data), True


@program
def write(path: str, chunk: str = "500") -> None:
    """Save e-mails with 1 KiB bodies, ``chunk`` at a time, until killed; say each total."""
    from notipipe import DatabaseConnection, EmailMessage

    db = DatabaseConnection(path)
    size = int(chunk)
    saved = 0
    while True:
        db.save_many(
            [
                EmailMessage(f"ops{i % 50}@example.com", f"disk {i}", BODY, priority=1 + i % 5)
                for i in range(size)
            ],
            durable=True,
        )
        saved += size
        say("saved", saved)


if __name__ == "__main__":
    program.main()
