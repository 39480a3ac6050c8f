"""The storage backends, side by side behind one interface.

``interface`` is what ``DatabaseConnection`` needs from a backend (``Storage``);
``group_commit`` is the queue and writer thread they share (``GroupCommitStore``); ``sqlite``
keeps the alerts in a SQLite file, ``postgresql`` in a PostgreSQL database (psycopg is imported
only when a PostgreSQL URL is used).
"""
