"""The NATS JetStream backend: alerts in a stream, a chunk of them per message.

``client`` holds the connection (its own asyncio loop on a thread of its own) and parses the
``nats://`` target; ``codec`` picks the chunk codec twin; ``store`` is the writer and the reads;
``follow`` follows the stream; ``backend`` is the ``Backend`` object. nats-py is imported only
when a nats:// target is used.
"""
