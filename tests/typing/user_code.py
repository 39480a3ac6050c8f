"""A user's module: the acceptance cases as a type checker sees them (mypy and basedpyright)."""

from notipipe import DatabaseConnection, EmailMessage, MessageFactory, Observer, Publisher, SMSMessage


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
