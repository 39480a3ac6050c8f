"""The SQLite backend: ``store`` (``MessageStore``, the writer's side) and ``file`` (opening a
notipipe SQLite file)."""
