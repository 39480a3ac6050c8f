"""The live web dashboard of an alert database (``notipipe serve``; extra ``notipipe[dashboard]``).

``Dashboard(db)`` follows a database another process is writing and streams it to browsers as
Server-Sent Events; ``create_app(dashboard)`` is the Starlette application (``/``, ``/events``).
"""

from __future__ import annotations

from notipipe.cli.dashboard._app import QUEUE_SIZE, Dashboard, create_app

__all__ = ["QUEUE_SIZE", "Dashboard", "create_app"]
