"""mypy must reject this file: an object without update() is not an Observer."""

from notipipe import DatabaseConnection


class NotAnObserver:
    def notify(self, message: str) -> None:
        print(message)


DatabaseConnection().subscribe(NotAnObserver())  # E: arg-type
