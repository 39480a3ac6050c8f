"""The factory: ``MessageFactory.create_message(kind, **fields)`` builds frozen, slotted,
validated messages (``EmailMessage``, ``SMSMessage``).

Run: ``python examples/factory.py`` (needs notipipe only).
"""

import dataclasses

from notipipe import MAX_SMS_BODY, EmailMessage, MessageFactory, fields_of

email = MessageFactory.create_message("email", recipient="ops@example.com", subject="disk 91%", priority=4)
sms = MessageFactory.create_message("sms", phone_number="+15551234567", body="db down", priority=5)
print("email:", email.recipient, email.subject, "priority", email.priority)
print("sms:", sms.phone_number, sms.body, "priority", sms.priority)
print("is an EmailMessage:", isinstance(email, EmailMessage), "| has __dict__:", hasattr(email, "__dict__"))
print("fields_of(sms):", fields_of(sms))

try:
    email.subject = "changed"  # type: ignore[misc]
except dataclasses.FrozenInstanceError as error:
    print("frozen:", error)
try:
    MessageFactory.create_message("sms", phone_number="+15551234567", body="x" * (MAX_SMS_BODY + 1))
except ValueError as error:
    print("refused:", error)
try:
    MessageFactory.create_message("fax")
except ValueError as error:
    print("unknown kind:", error)
