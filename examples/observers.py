"""Observers: anything with ``update(message)`` subscribes (no base class); a failing observer
costs only itself, reported to ``error_handler`` while the others still get the message.

Run: ``python examples/observers.py`` (needs notipipe only).
"""

from notipipe import DatabaseConnection, Publisher


class Dashboard:
    def update(self, message: object) -> None:
        print(f"dashboard: {message}")


class Broken:
    def update(self, message: object) -> None:
        raise RuntimeError("observer bug")


def report(observer: object, message: object, error: BaseException) -> None:
    print(f"error_handler: {type(observer).__name__} failed on {message!r}: {error}")


db = DatabaseConnection()
db.error_handler = report
dashboard = Dashboard()
print("subscribed:", db.subscribe(dashboard), db.subscribe(Broken()))
print("again:", db.subscribe(dashboard))  # already there: False, not a second delivery
db.notify_all("System Alert")
print("failures so far:", db.failures)
db.unsubscribe(dashboard)
db.notify_all("nobody but Broken hears this")

# A typed channel of your own: Publisher[str] accepts observers of str.
channel: Publisher[str] = Publisher()
channel.subscribe(Dashboard())
print("delivered by notify_many:", channel.notify_many(["a", "b"]))
