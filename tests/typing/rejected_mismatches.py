"""mypy must reject each marked line: typed channels, field names and kinds are checked."""

from notipipe import EmailMessage, MessageFactory, Publisher, SMSMessage


class TextDashboard:
    def update(self, message: str) -> None:
        print(message)


channel: Publisher[EmailMessage | SMSMessage] = Publisher()
channel.subscribe(TextDashboard())  # E: arg-type
channel.notify_all("plain text")  # E: arg-type
sms: SMSMessage = MessageFactory.create_message("email")  # E: assignment
# A bad field falls through to the open `str` overload, whose result is a plain Message:
bad: SMSMessage = MessageFactory.create_message("sms", priority="high")  # E: assignment
