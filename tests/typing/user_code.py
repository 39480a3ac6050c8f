"""A user's module: the acceptance cases as a type checker sees them (mypy and basedpyright)."""

from notipipe import (
    AsyncObserver,
    DatabaseConnection,
    EmailMessage,
    MessageFactory,
    Observer,
    Publisher,
    SMSMessage,
)


class DashboardAnalytics:  # no base class
    def update(self, message: str) -> None:
        print(f"dashboard: {message}")


class StructuredDashboard:
    def __init__(self) -> None:
        self.seen: list[EmailMessage | SMSMessage] = []

    def update(self, message: EmailMessage | SMSMessage) -> None:
        self.seen.append(message)


db1 = DatabaseConnection()
db2 = DatabaseConnection()
assert db1 is db2
msg = MessageFactory.create_message("email")
assert not hasattr(msg, "__dict__")

DatabaseConnection().subscribe(DashboardAnalytics())
DatabaseConnection().subscribe(StructuredDashboard())
DatabaseConnection().notify_all("System Alert")

email: EmailMessage = MessageFactory.create_message("email", recipient="ops@example.com")
sms: SMSMessage = MessageFactory.create_message("sms", phone_number="+15551234567", body="down")
generic: SMSMessage = MessageFactory.create(SMSMessage, body="up")

channel: Publisher[EmailMessage | SMSMessage] = Publisher()
channel.subscribe(StructuredDashboard())
channel.notify_all(email)
observer: Observer[str] = DashboardAnalytics()
failures: int = channel.failures


class LiveFeed:  # an async observer: awaited on the loop it was subscribed from
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def update(self, message: str) -> None:
        self.seen.append(message)

    async def update_many(self, messages: tuple[str, ...]) -> None:
        self.seen.extend(messages)


async def dashboard() -> None:
    feed = LiveFeed()
    alerts: Publisher[str] = Publisher()
    alerts.subscribe(feed, queue_size=256, overflow="drop_oldest")
    alerts.subscribe(DashboardAnalytics(), weak=True)
    DatabaseConnection().subscribe(feed, weak=True)
    async_observer: AsyncObserver[str] = feed
    dropped: int = alerts.dropped(async_observer)
    print(dropped)
