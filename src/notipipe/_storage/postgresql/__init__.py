"""The PostgreSQL backend: ``store`` (``PgMessageStore``), ``copy`` (the binary COPY payload),
``schema`` (the tables), ``follow`` (reading what writers commit) and ``subscribers`` (durable
named subscribers).

Nothing here imports psycopg: ``store`` imports it when a store is made; ``follow`` and
``subscribers`` are imported only when used.
"""
