# cython: language_level=3, freethreading_compatible=True
"""Compiled message records: the twin of ``_messages_py.py`` (the type truth).

Each message is a Cython dataclass on a ``cdef class``: fixed C fields (no ``__dict__``, no
per-object slots table), ``dataclasses.is_dataclass``/``fields``/``replace`` work, and the fields
are ``str`` and C numbers only, so Cython gives the type no ``tp_traverse``: the objects are not
tracked by the garbage collector (they cannot form a cycle). The fields are read-only after
``__init__`` (frozen); a frozen object is trivially safe to share between free threads.

Validation mirrors the pure twin rule for rule, message for message, with C loops instead of
regular expressions.
"""

cimport cython
from cpython.time cimport time as _now
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_AsLongLongAndOverflow
from cpython.unicode cimport Py_UNICODE_ISSPACE

from notipipe._messages_py import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    MAX_SMS_BODY,
    MAX_SUBJECT,
    MIN_PRIORITY,
)

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "EmailMessage",
    "SMSMessage",
]

cdef Py_ssize_t _MAX_LOCAL = 64
cdef Py_ssize_t _MAX_ADDRESS = 254
cdef long _MIN_PRIORITY = MIN_PRIORITY
cdef long _MAX_PRIORITY = MAX_PRIORITY
cdef Py_ssize_t _MAX_SMS_BODY = MAX_SMS_BODY
cdef Py_ssize_t _MAX_SUBJECT = MAX_SUBJECT


cdef inline TypeError _fail_type(str cls, str field, object value, str expected):
    return TypeError(f"{cls}.{field}: expected {expected}, got {type(value).__name__} {value!r}")


cdef str _check_str(str cls, str field, object value, Py_ssize_t limit):
    if type(value) is not str:
        raise _fail_type(cls, field, value, "str")
    cdef str text = <str>value
    if len(text) > limit:
        raise ValueError(f"{cls}.{field}: {text[:40]!r}... is {len(text)} characters, the limit is {limit}")
    return text


cdef inline bint _blank(Py_UCS4 ch) noexcept:
    # The pure twin's [\s\x00-\x1f\x7f]: control characters and Unicode white space.
    return ch < 0x20 or ch == 0x7f or Py_UNICODE_ISSPACE(ch)


cdef str _check_email(object value):
    cdef str address = _check_str("EmailMessage", "recipient", value, _MAX_ADDRESS)
    cdef Py_ssize_t n = len(address), at = -1, i
    cdef Py_UCS4 ch, prev = 0
    cdef bint ok = True, dot = False
    if n == 0:  # empty: the dashboard's default distribution list
        return address
    for i in range(n):
        ch = address[i]
        if _blank(ch):
            ok = False
            break
        if ch == u'@':
            if at >= 0:
                ok = False  # a second '@'
                break
            at = i
        elif at >= 0 and ch == u'.':
            if i == at + 1 or prev == u'.' or i == n - 1:
                ok = False  # domain starts or ends with '.', or holds '..'
                break
            dot = True
        prev = ch
    if not (ok and 0 < at <= _MAX_LOCAL and at < n - 1 and dot):
        raise ValueError(f"EmailMessage.recipient: {address!r} is not an e-mail address (name@domain.tld)")
    return address


cdef str _check_phone(object value):
    cdef str number = _check_str("SMSMessage", "phone_number", value, 16)
    cdef Py_ssize_t n = len(number), i
    cdef Py_UCS4 ch
    cdef bint ok = 3 <= n <= 16 and number[0] == u'+' and u'1' <= number[1] <= u'9'
    if n == 0:
        return number
    if ok:
        for i in range(2, n):
            ch = number[i]
            if not (u'0' <= ch <= u'9'):
                ok = False
                break
    if not ok:
        raise ValueError(f"SMSMessage.phone_number: {number!r} is not an E.164 number (+ and 2 to 15 digits)")
    return number


cdef str _check_subject(object value):
    cdef str subject = _check_str("EmailMessage", "subject", value, _MAX_SUBJECT)
    cdef Py_UCS4 ch
    for ch in subject:
        if ch == u'\n' or ch == u'\r':
            raise ValueError(f"EmailMessage.subject: {subject!r} contains a line break")
    return subject


cdef long _check_priority(str cls, object value) except? -1:
    if type(value) is not int:  # bool is an int subclass, and rejected on purpose
        raise _fail_type(cls, "priority", value, "int")
    # C comparisons below: a Python one costs several hundred instructions. No try block either
    # (entering one costs a thread-state lookup): the overflow flag says "far out of range".
    cdef int overflow = 0
    cdef long v = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow:
        v = _MIN_PRIORITY - 1
    if not (_MIN_PRIORITY <= v <= _MAX_PRIORITY):
        raise ValueError(f"{cls}.priority: {value!r} is outside {MIN_PRIORITY}..{MAX_PRIORITY}")
    return v


cdef long long _check_id(str cls, object value) except? -1:
    if type(value) is not int:
        raise _fail_type(cls, "id", value, "int")
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < 0:
        raise ValueError(f"{cls}.id: {value!r} is outside 0..2**63-1")
    return v


cdef double _check_time(str cls, object value) except? -1.0:
    if value is None:
        return _now()
    if type(value) is not float and type(value) is not int:
        raise _fail_type(cls, "created_at", value, "float")
    cdef double stamp = float(value)
    if not (0.0 <= stamp < 1e11):  # also rejects NaN and infinities
        raise ValueError(f"{cls}.created_at: {value!r} is not a Unix time in seconds")
    return stamp


@cython.final
@cython.dataclasses.dataclass(frozen=True, init=False)
cdef class EmailMessage:
    """An e-mail alert. Frozen, fixed C fields, no ``__dict__``.

    Defaults: empty ``recipient`` (the dashboard's default distribution list), empty
    ``subject`` and ``body``, priority 3, ``created_at`` now, ``id`` 0 (not stored yet; the
    store's messages carry their row id).
    """

    kind = "email"

    recipient: str
    subject: str
    body: str
    priority: cython.long
    created_at: cython.double
    id: cython.longlong

    def __init__(
        self,
        recipient="",
        subject="",
        body="",
        *,
        priority=DEFAULT_PRIORITY,
        created_at=None,
        id=0,
    ):
        self.recipient = _check_email(recipient)
        self.subject = _check_subject(subject)
        self.body = _check_str("EmailMessage", "body", body, 1 << 20)
        self.priority = _check_priority("EmailMessage", priority)
        self.created_at = _check_time("EmailMessage", created_at)
        self.id = _check_id("EmailMessage", id)


@cython.final
@cython.dataclasses.dataclass(frozen=True, init=False)
cdef class SMSMessage:
    """An SMS alert. Frozen, fixed C fields, no ``__dict__``.

    Defaults: empty ``phone_number`` (the on-call rota), empty ``body``, priority 3,
    ``created_at`` now, ``id`` 0. The body holds at most ``MAX_SMS_BODY`` characters.
    """

    kind = "sms"

    phone_number: str
    body: str
    priority: cython.long
    created_at: cython.double
    id: cython.longlong

    def __init__(
        self,
        phone_number="",
        body="",
        *,
        priority=DEFAULT_PRIORITY,
        created_at=None,
        id=0,
    ):
        self.phone_number = _check_phone(phone_number)
        self.body = _check_str("SMSMessage", "body", body, _MAX_SMS_BODY)
        self.priority = _check_priority("SMSMessage", priority)
        self.created_at = _check_time("SMSMessage", created_at)
        self.id = _check_id("SMSMessage", id)
