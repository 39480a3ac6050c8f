"""reveal_type() of the public API: concrete classes, never Any."""

from typing import reveal_type

from notipipe import DatabaseConnection, EmailMessage, MessageFactory, SMSMessage

reveal_type(MessageFactory.create_message("email"))  # R: notipipe._messages_py.EmailMessage
reveal_type(MessageFactory.create_message("sms"))  # R: notipipe._messages_py.SMSMessage
reveal_type(MessageFactory.create(EmailMessage))  # R: notipipe._messages_py.EmailMessage
reveal_type(MessageFactory.create(SMSMessage, body="x"))  # R: notipipe._messages_py.SMSMessage
reveal_type(DatabaseConnection())  # R: notipipe._database.DatabaseConnection
reveal_type(DatabaseConnection().failures)  # R: int
reveal_type(MessageFactory.create_message("email").priority)  # R: int
