# cython: language_level=3, freethreading_compatible=True
"""Compiled message records: the twin of ``_messages_py.py`` (the type truth).

Each message is a Cython dataclass on a ``cdef class``: fixed C fields (no ``__dict__``, no
per-object slots table), ``dataclasses.is_dataclass``/``fields``/``replace`` work, and the fields
are ``str`` and C numbers only, so Cython gives the type no ``tp_traverse``: the objects are not
tracked by the garbage collector (they cannot form a cycle). The fields are read-only after
construction (frozen). Construction never runs ``__init__``: calling the class builds and fills
the object in one step, and ``__init__``, ``__new__``, ``__setattr__`` and ``__delattr__`` refuse
(as in the pure twin, with the pure twin's errors). So no field of a message is ever written
after another thread could see it, and a message is safe to read from any number of free
threads: there is no path by which a reader could meet a string that a writer is releasing.

Validation mirrors the pure twin rule for rule, message for message, with C loops instead of
regular expressions.

Creation is the hot path, so each class is called through its own vectorcall entry (no argument
tuple or dict; the common case of every check tested on the raw objects) and, on GIL builds,
reuses dead objects from a Cython free list. ``create_message`` hands the caller's keywords on
to the class without a dict. The benchmark suite measures all of it against msgspec.
"""

cimport cython
from cpython.time cimport time as _now
from cpython.object cimport PyObject
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_AsLongLongAndOverflow
from cpython.unicode cimport Py_UNICODE_ISSPACE
from libc.math cimport signbit

from dataclasses import replace as _dataclass_replace
from typing import ClassVar  # for typing.get_type_hints on the classes' annotations

from notipipe import _messages_py as _twin
from notipipe._limits import (
    DEFAULT_PRIORITY,
    MAX_ADDRESS,
    MAX_BODY,
    MAX_LOCAL,
    MAX_PHONE,
    MAX_PRIORITY,
    MAX_SMS_BODY,
    MAX_SUBJECT,
    MIN_PHONE_DIGITS,
    MIN_PRIORITY,
    TIME_LIMIT,
    assignment_error,
    deletion_error,
    id_error,
    line_break_error,
    new_error,
    not_a_number_error,
    not_a_time_error,
    not_an_address_error,
    priority_error,
    reinit_error,
    surrogate_error,
    too_long_error,
    type_error,
)
from notipipe._messages_py import _email_arguments, _sms_arguments

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "MAX_SMS_BODY",
    "MAX_SUBJECT",
    "MIN_PRIORITY",
    "EmailMessage",
    "SMSMessage",
]

# The limits as C values, copied once at import: the checks compare C integers and doubles.
cdef Py_ssize_t _MAX_LOCAL = MAX_LOCAL
cdef Py_ssize_t _MAX_ADDRESS = MAX_ADDRESS
cdef Py_ssize_t _MAX_PHONE = MAX_PHONE
cdef Py_ssize_t _MIN_PHONE = 1 + MIN_PHONE_DIGITS
cdef long _MIN_PRIORITY = MIN_PRIORITY
cdef long _MAX_PRIORITY = MAX_PRIORITY
cdef Py_ssize_t _MAX_SMS_BODY = MAX_SMS_BODY
cdef Py_ssize_t _MAX_SUBJECT = MAX_SUBJECT
cdef Py_ssize_t _MAX_BODY = MAX_BODY
cdef double _TIME_LIMIT = TIME_LIMIT


# C-API macros on borrowed pointers, for the common case of each check (see _call_sms): no
# reference counting, no call, no exception state.
cdef extern from *:
    """
    #define notipipe_small_int_value(o) PyUnstable_Long_CompactValue((PyLongObject *)(o))
    #define notipipe_small_int(o) (PyLong_CheckExact(o) && PyUnstable_Long_IsCompact((PyLongObject *)(o)))
    """
    bint _small_int "notipipe_small_int"(PyObject* o)  # an exact int of one 30-bit digit
    Py_ssize_t _small_int_value "notipipe_small_int_value"(PyObject* o)
    bint _is_str "PyUnicode_CheckExact"(PyObject* o)
    bint _is_ascii "PyUnicode_IS_ASCII"(PyObject* o)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject* o)
    const unsigned char* _ascii_data "PyUnicode_1BYTE_DATA"(PyObject* o)
    bint _is_float "PyFloat_CheckExact"(PyObject* o)
    double _float_value "PyFloat_AS_DOUBLE"(PyObject* o)
    Py_ssize_t PY_SSIZE_T_MAX


# UTF-8 cannot encode a surrogate code point (U+D800..U+DFFF), so the store could not write a
# str holding one. Only the 2- and 4-byte string kinds can hold one: the common case (ASCII or
# Latin-1 text) is decided by the kind alone, and the rest is one pass over the code units.
cdef extern from *:
    """
    static Py_ssize_t notipipe_find_surrogate(PyObject *s) {
        Py_ssize_t i, n = PyUnicode_GET_LENGTH(s);
        if (PyUnicode_KIND(s) == PyUnicode_2BYTE_KIND) {
            const Py_UCS2 *d = PyUnicode_2BYTE_DATA(s);
            for (i = 0; i < n; i++) if (Py_UNICODE_IS_SURROGATE(d[i])) return i;
        } else if (PyUnicode_KIND(s) == PyUnicode_4BYTE_KIND) {
            const Py_UCS4 *d = PyUnicode_4BYTE_DATA(s);
            for (i = 0; i < n; i++) if (Py_UNICODE_IS_SURROGATE(d[i])) return i;
        }
        return -1;
    }
    #define notipipe_encodable(s) \
        (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND || notipipe_find_surrogate(s) < 0)
    """
    Py_ssize_t _find_surrogate "notipipe_find_surrogate"(PyObject* s) noexcept
    bint _encodable "notipipe_encodable"(PyObject* s) noexcept


cdef inline bint _small_int_in(PyObject* o, Py_ssize_t low, Py_ssize_t high) noexcept:
    return _small_int(o) and low <= _small_int_value(o) <= high


cdef inline bint _plain_stamp(PyObject* o) noexcept:
    # Strictly positive: 0.0 and -0.0 take the path that tells them apart (_check_time).
    return _is_float(o) and 0.0 < _float_value(o) < _TIME_LIMIT


cdef str _check_str(str cls, str field, object value, Py_ssize_t limit):
    if type(value) is not str:
        raise type_error(cls, field, value, "str")
    cdef str text = <str>value
    if len(text) > limit:
        raise too_long_error(cls, field, text, limit)
    if not _encodable(<PyObject*>text):
        raise surrogate_error(cls, field, text, _find_surrogate(<PyObject*>text))
    return text


cdef inline bint _blank(Py_UCS4 ch) noexcept:
    # The pure twin's [\s\x00-\x1f\x7f]: control characters and Unicode white space.
    return ch < 0x20 or ch == 0x7f or Py_UNICODE_ISSPACE(ch)


cdef bint _email_shape(str address) noexcept:
    """name@domain.tld: one '@' after 1 to MAX_LOCAL characters, a dotted domain, nothing blank."""
    cdef Py_ssize_t n = len(address), at = -1, i
    cdef Py_UCS4 ch, prev = 0
    cdef bint dot = False
    # An ASCII address (the common one) is read as bytes: no per-character kind dispatch.
    cdef const unsigned char* ascii = _ascii_data(<PyObject*>address) if _is_ascii(<PyObject*>address) else NULL
    for i in range(n):
        ch = ascii[i] if ascii is not NULL else address[i]
        if _blank(ch):
            return False
        if ch == u'@':
            if at >= 0:
                return False  # a second '@'
            at = i
        elif at >= 0 and ch == u'.':
            if i == at + 1 or prev == u'.' or i == n - 1:
                return False  # domain starts or ends with '.', or holds '..'
            dot = True
        prev = ch
    return 0 < at <= _MAX_LOCAL and at < n - 1 and dot


cdef str _check_email(object value):
    cdef str address = _check_str("EmailMessage", "recipient", value, _MAX_ADDRESS)
    # empty: the dashboard's default distribution list
    if len(address) and not _email_shape(address):
        raise not_an_address_error(address)
    return address


cdef bint _e164_shape(PyObject* o) noexcept:
    """An exact str, empty or "+", a digit 1-9 and more digits (MIN_PHONE_DIGITS to
    MAX_PHONE_DIGITS in all). Such a number is ASCII, so the test reads the ASCII bytes (a str
    that is not ASCII is not a number)."""
    if not (_is_str(o) and _is_ascii(o)):
        return False
    cdef Py_ssize_t n = _str_len(o), i
    if n == 0:
        return True
    if n < _MIN_PHONE or n > _MAX_PHONE:
        return False
    cdef const unsigned char* text = _ascii_data(o)
    if text[0] != c'+' or not (c'1' <= text[1] <= c'9'):
        return False
    for i in range(2, n):
        if not (c'0' <= text[i] <= c'9'):
            return False
    return True


cdef str _check_phone(object value):
    cdef str number = _check_str("SMSMessage", "phone_number", value, _MAX_PHONE)
    if not _e164_shape(<PyObject*>number):
        raise not_a_number_error(number)
    return number


cdef inline bint _line_break(Py_UCS4 ch) noexcept:
    # What str.splitlines() splits at (the pure twin asks it): LF, VT, FF, CR; the information
    # separators U+001C..U+001E; NEL; the line and paragraph separators.
    return (
        0x0a <= ch <= 0x0d or 0x1c <= ch <= 0x1e or ch == 0x85 or ch == 0x2028 or ch == 0x2029
    )


cdef bint _one_line(str text) noexcept:
    cdef Py_UCS4 ch
    for ch in text:
        if _line_break(ch):
            return False
    return True


cdef str _check_subject(object value):
    cdef str subject = _check_str("EmailMessage", "subject", value, _MAX_SUBJECT)
    if not _one_line(subject):
        raise line_break_error(subject)
    return subject


cdef long _check_priority(str cls, object value) except? -1:
    if type(value) is not int:  # bool is an int subclass, and rejected on purpose
        raise type_error(cls, "priority", value, "int")
    # Compared as a C long below, not as Python ints (no rich comparison, no bool objects). No
    # try block either (entering one costs a thread-state lookup): the overflow flag says "far
    # out of range".
    cdef int overflow = 0
    cdef long v = PyLong_AsLongAndOverflow(value, &overflow)
    if overflow:
        v = _MIN_PRIORITY - 1
    if not (_MIN_PRIORITY <= v <= _MAX_PRIORITY):
        raise priority_error(cls, value)
    return v


cdef long long _check_id(str cls, object value) except? -1:
    if type(value) is not int:
        raise type_error(cls, "id", value, "int")
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < 0:
        raise id_error(cls, value)
    return v


cdef double _check_time(str cls, object value) except? -1.0:
    if value is None:
        return _now()
    if type(value) is not float and type(value) is not int:
        raise type_error(cls, "created_at", value, "float")
    # An int is range-checked as an int: float() would overflow on one beyond the float range.
    cdef int overflow = 0
    cdef long long whole
    cdef double stamp
    if type(value) is int:
        whole = PyLong_AsLongLongAndOverflow(value, &overflow)
        stamp = -1.0 if overflow else <double>whole
    else:
        stamp = _float_value(<PyObject*>value)
    # Also rejects NaN and infinities; -0.0 with the negative times (0.0 <= -0.0 holds).
    if not (0.0 <= stamp < _TIME_LIMIT) or signbit(stamp):
        raise not_a_time_error(cls, value)
    return stamp


# The class bodies below declare C fields; the pure twin (the type truth) supplies what a
# Python-level reader sees: the signature, and the fields' records (patched in after the classes).

@cython.final
@cython.auto_pickle(False)  # __reduce__ below: pickling calls the class, which validates
@cython.freelist(64)  # GIL builds only: Cython turns freelists off on free-threaded ones
@cython.dataclasses.dataclass(frozen=True, init=False)
cdef class EmailMessage:
    """An e-mail alert. Frozen, fixed C fields, no ``__dict__``.

    Defaults: empty ``recipient`` (the dashboard's default distribution list), empty
    ``subject`` and ``body``, priority 3, ``created_at`` now, ``id`` 0 (not stored yet; the
    store's messages carry their row id).
    """

    kind = "email"
    __signature__ = _twin.EmailMessage.__signature__
    __annotations__ = dict(_twin.EmailMessage.__annotations__)
    __final__ = True  # what typing.final marks on the pure twin

    recipient: str
    subject: str
    body: str
    priority: cython.long
    created_at: cython.double
    id: cython.longlong

    def __init__(self, *args, **kwargs):
        # Calling the class never runs this (see _call_email): this is a second initialisation.
        raise reinit_error("EmailMessage")

    def __setattr__(self, name, value):
        raise assignment_error(name)

    def __delattr__(self, name):
        raise deletion_error(name)

    def __reduce__(self):
        values = (self.recipient, self.subject, self.body, self.priority, self.created_at, self.id)
        return _restore_email, (values,)

    def __replace__(self, /, **changes):
        return _dataclass_replace(self, **changes)

    def _row(self):
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("email", self.created_at, self.priority, self.recipient, self.subject, self.body)


@cython.final
@cython.auto_pickle(False)
@cython.freelist(64)  # GIL builds only: Cython turns freelists off on free-threaded ones
@cython.dataclasses.dataclass(frozen=True, init=False)
cdef class SMSMessage:
    """An SMS alert. Frozen, fixed C fields, no ``__dict__``.

    Defaults: empty ``phone_number`` (the on-call rota), empty ``body``, priority 3,
    ``created_at`` now, ``id`` 0. The body holds at most ``MAX_SMS_BODY`` characters.
    """

    kind = "sms"
    __signature__ = _twin.SMSMessage.__signature__
    __annotations__ = dict(_twin.SMSMessage.__annotations__)
    __final__ = True

    phone_number: str
    body: str
    priority: cython.long
    created_at: cython.double
    id: cython.longlong

    def __init__(self, *args, **kwargs):
        raise reinit_error("SMSMessage")  # see EmailMessage.__init__

    def __setattr__(self, name, value):
        raise assignment_error(name)

    def __delattr__(self, name):
        raise deletion_error(name)

    def __reduce__(self):
        return _restore_sms, ((self.phone_number, self.body, self.priority, self.created_at, self.id),)

    def __replace__(self, /, **changes):
        return _dataclass_replace(self, **changes)

    def _row(self):
        """The store's row: (kind, created_at, priority, address, subject, body)."""
        return ("sms", self.created_at, self.priority, self.phone_number, "", self.body)


def _restore_email(values):
    recipient, subject, body, priority, created_at, id = values
    return EmailMessage(recipient, subject, body, priority=priority, created_at=created_at, id=id)


def _restore_sms(values):
    phone_number, body, priority, created_at, id = values
    return SMSMessage(phone_number, body, priority=priority, created_at=created_at, id=id)


cdef _match_twin_records(cls, twin):
    """Cython records the C types (``cython.long``) and no defaults or keyword-only flags; the
    records (``dataclasses.fields``) are the pure twin's, so the two describe one constructor."""
    cdef object record, truth
    for name, record in cls.__dataclass_fields__.items():
        truth = twin.__dataclass_fields__[name]
        record.type = truth.type
        record.default = truth.default
        record.default_factory = truth.default_factory
        record.kw_only = truth.kw_only
    # No __dict__ and a fixed set of fields: what slots=True gives the pure twin.
    cls.__dataclass_params__.slots = twin.__dataclass_params__.slots


_match_twin_records(EmailMessage, _twin.EmailMessage)
_match_twin_records(SMSMessage, _twin.SMSMessage)


cdef inline int _fill_email(EmailMessage m, recipient, subject, body, priority, created_at, id) except -1:
    m.recipient = _check_email(recipient)
    m.subject = _check_subject(subject)
    m.body = _check_str("EmailMessage", "body", body, _MAX_BODY)
    m.priority = _check_priority("EmailMessage", priority)
    m.created_at = _check_time("EmailMessage", created_at)
    m.id = _check_id("EmailMessage", id)
    return 0


cdef inline int _fill_sms(SMSMessage m, phone_number, body, priority, created_at, id) except -1:
    m.phone_number = _check_phone(phone_number)
    m.body = _check_str("SMSMessage", "body", body, _MAX_SMS_BODY)
    m.priority = _check_priority("SMSMessage", priority)
    m.created_at = _check_time("SMSMessage", created_at)
    m.id = _check_id("SMSMessage", id)
    return 0


# ---------------------------------------------------------------------------------------------
# Calling the classes. A cdef class is called through type.__call__: the arguments are packed
# into a tuple and a dict, then tp_new and tp_init unpack them again; that packing was the gap
# to msgspec. Each class gets a vectorcall entry instead (as list, dict and msgspec's Struct
# types have): it reads the caller's argument array and the keyword names directly, makes the
# object with the class's own allocator and fills it; tp_init is never called. Keywords are
# matched by identity (call sites and Cython both intern identifiers); anything unusual (a name
# built at run time, a field given twice, too many positionals, an unknown name) is bound by
# the pure twin's binding function, so the errors are Python's own, worded as for the pure
# class. The types' tp_new refuses, so `EmailMessage.__new__(EmailMessage)` and type.__call__
# cannot make an object with no fields; this module allocates through the original tp_new
# (Cython calls it directly).

cdef extern from *:
    """
    static void notipipe_set_vectorcall(PyObject *type, void *call) {
        /* Only for the final classes below, at import, before any other thread sees them. */
        ((PyTypeObject *)type)->tp_vectorcall = (vectorcallfunc)call;
    }
    static void notipipe_set_new(PyObject *type, void *new_) {
        /* The same: at import, before any other thread sees the type. */
        ((PyTypeObject *)type)->tp_new = (newfunc)new_;
    }
    """
    void notipipe_set_vectorcall(object type, void* call)
    void notipipe_set_new(object type, void* new_)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    Py_ssize_t _tuple_size "PyTuple_GET_SIZE"(PyObject* t)
    PyObject* _tuple_item "PyTuple_GET_ITEM"(PyObject* t, Py_ssize_t i)
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)


cdef tuple _EMAIL_FIELDS = ("recipient", "subject", "body", "priority", "created_at", "id")
cdef tuple _SMS_FIELDS = ("phone_number", "body", "priority", "created_at", "id")
cdef object _DEFAULT_PRIORITY = DEFAULT_PRIORITY
cdef object _ZERO = 0


cdef bint _bind(PyObject** args, Py_ssize_t nargs, PyObject* kwnames, tuple fields,
                Py_ssize_t npos, PyObject** out) noexcept:
    """Place the arguments in ``out`` (borrowed, field order); False: bind them slowly."""
    cdef Py_ssize_t i, j, nfields = _tuple_size(<PyObject*>fields)
    cdef PyObject* name
    if nargs > npos:
        return False
    for i in range(nargs):
        out[i] = args[i]
    if kwnames is NULL:
        return True
    for i in range(_tuple_size(kwnames)):
        name = _tuple_item(kwnames, i)
        j = nargs  # fields before nargs were given positionally: a keyword for one is an error
        while j < nfields and name != _tuple_item(<PyObject*>fields, j):
            j += 1
        if j == nfields:
            return False
        out[j] = args[nargs + i]
    return True


cdef dict _keywords(PyObject** values, PyObject* kwnames):
    """The keyword part of a vectorcall as a dict; ``values`` points at the first keyword value."""
    cdef Py_ssize_t i, nkw = 0 if kwnames is NULL else _tuple_size(kwnames)
    return {<object>_tuple_item(kwnames, i): <object>values[i] for i in range(nkw)}


cdef object _call_email(object cls, PyObject** args, size_t nargsf, PyObject* kwnames):
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf)
    cdef PyObject* v[6]
    v[0] = v[1] = v[2] = <PyObject*>""
    v[3] = <PyObject*>_DEFAULT_PRIORITY
    v[4] = <PyObject*>None
    v[5] = <PyObject*>_ZERO
    cdef EmailMessage email = EmailMessage.__new__(EmailMessage)
    if not _bind(args, nargs, kwnames, _EMAIL_FIELDS, 3, v):
        bound = PyObject_Vectorcall(_email_arguments, args, nargs, kwnames)  # raises if unbindable
        _fill_email(email, bound[0], bound[1], bound[2], bound[3], bound[4], bound[5])
        return email
    if (  # the common case, checked on the raw objects; anything else takes _fill_email
        _is_str(v[0]) and _str_len(v[0]) <= _MAX_ADDRESS
        and (_str_len(v[0]) == 0 or _email_shape(<str>v[0])) and _encodable(v[0])
        and _is_str(v[1]) and _str_len(v[1]) <= _MAX_SUBJECT and _one_line(<str>v[1]) and _encodable(v[1])
        and _is_str(v[2]) and _str_len(v[2]) <= _MAX_BODY and _encodable(v[2])
        and _small_int_in(v[3], _MIN_PRIORITY, _MAX_PRIORITY)
        and (v[4] == <PyObject*>None or _plain_stamp(v[4]))
        and _small_int_in(v[5], 0, PY_SSIZE_T_MAX)
    ):
        email.recipient = <str>v[0]
        email.subject = <str>v[1]
        email.body = <str>v[2]
        email.priority = _small_int_value(v[3])
        email.created_at = _now() if v[4] == <PyObject*>None else _float_value(v[4])
        email.id = _small_int_value(v[5])
        return email
    _fill_email(email, <object>v[0], <object>v[1], <object>v[2], <object>v[3], <object>v[4], <object>v[5])
    return email


cdef object _call_sms(object cls, PyObject** args, size_t nargsf, PyObject* kwnames):
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf)
    cdef PyObject* v[5]
    v[0] = v[1] = <PyObject*>""
    v[2] = <PyObject*>_DEFAULT_PRIORITY
    v[3] = <PyObject*>None
    v[4] = <PyObject*>_ZERO
    cdef SMSMessage sms = SMSMessage.__new__(SMSMessage)
    if not _bind(args, nargs, kwnames, _SMS_FIELDS, 2, v):
        bound = PyObject_Vectorcall(_sms_arguments, args, nargs, kwnames)  # raises if unbindable
        _fill_sms(sms, bound[0], bound[1], bound[2], bound[3], bound[4])
        return sms
    if (  # the common case, checked on the raw objects; anything else takes _fill_sms
        _e164_shape(v[0])  # ASCII, so encodable
        and _is_str(v[1]) and _str_len(v[1]) <= _MAX_SMS_BODY and _encodable(v[1])
        and _small_int_in(v[2], _MIN_PRIORITY, _MAX_PRIORITY)
        and (v[3] == <PyObject*>None or _plain_stamp(v[3]))
        and _small_int_in(v[4], 0, PY_SSIZE_T_MAX)
    ):
        sms.phone_number = <str>v[0]
        sms.body = <str>v[1]
        sms.priority = _small_int_value(v[2])
        sms.created_at = _now() if v[3] == <PyObject*>None else _float_value(v[3])
        sms.id = _small_int_value(v[4])
        return sms
    _fill_sms(sms, <object>v[0], <object>v[1], <object>v[2], <object>v[3], <object>v[4])
    return sms


cdef object _refuse_new(PyObject* cls, PyObject* args, PyObject* kwargs):
    raise new_error((<object>cls).__name__)


notipipe_set_vectorcall(EmailMessage, <void*>_call_email)
notipipe_set_vectorcall(SMSMessage, <void*>_call_sms)
notipipe_set_new(EmailMessage, <void*>_refuse_new)
notipipe_set_new(SMSMessage, <void*>_refuse_new)


# ---------------------------------------------------------------------------------------------
# MessageFactory.create_message, compiled: a METH_FASTCALL builtin, so the keyword fields are
# never packed into a dict. It looks the kind up in the factory's registry and hands the
# caller's keyword array on to the kind (for the built-in kinds, to the vectorcall entries
# above). Anything else (a wrong positional count, an unknown or unhashable kind, a registry
# that is not a dict) goes to the pure factory's create_generic, which explains the error.

cdef extern from "Python.h":
    ctypedef struct _MethodDef "PyMethodDef":
        const char* ml_name
        void* ml_meth
        int ml_flags
        const char* ml_doc
    int METH_FASTCALL
    int METH_KEYWORDS
    object PyCFunction_NewEx(_MethodDef* ml, PyObject* self, PyObject* module)


cdef extern from *:
    """
    /* A strong reference to d[k]: another thread may replace a registered kind meanwhile, so a
       borrowed one is not safe on a free-threaded build (PyDict_GetItemRef is 3.13+; under the
       GIL of 3.12 the borrowed lookup and the increment cannot be interleaved). */
    #if PY_VERSION_HEX >= 0x030D0000
    #define notipipe_dict_get_ref(d, k, out) PyDict_GetItemRef((d), (k), (out))
    #else
    static int notipipe_dict_get_ref(PyObject *d, PyObject *k, PyObject **out) {
        *out = PyDict_GetItemWithError(d, k);
        if (*out == NULL) return PyErr_Occurred() ? -1 : 0;
        Py_INCREF(*out);
        return 1;
    }
    #endif
    """
    int _dict_get_ref "notipipe_dict_get_ref"(object d, object k, PyObject** out) except -1
    void _decref "Py_DECREF"(PyObject* o)


cdef object _create_message(PyObject* unused, PyObject** args, Py_ssize_t nargs, PyObject* kwnames):
    cdef PyObject* found = NULL
    if nargs == 2:
        cls = <object>args[0]
        msg_type = <object>args[1]
        kinds = getattr(cls, "_kinds", None)
        if type(kinds) is dict and type(msg_type) is str and _dict_get_ref(kinds, msg_type, &found):
            make = <object>found
            _decref(found)  # `make` holds the strong reference the lookup returned
            return PyObject_Vectorcall(make, args + 2, 0, kwnames)
    if nargs != 2:
        raise TypeError(
            f"create_message() takes 2 positional arguments (the factory and the message type) but "
            f"{nargs} were given{'; the fields are keywords' if nargs > 2 else ''}"
        )
    from notipipe._factory import create_generic

    return create_generic(<object>args[0], <object>args[1], _keywords(args + 2, kwnames))


cdef _MethodDef _create_message_def
_create_message_def.ml_name = b"create_message"
_create_message_def.ml_meth = <void*>_create_message
_create_message_def.ml_flags = METH_FASTCALL | METH_KEYWORDS
_create_message_def.ml_doc = (
    b"create_message(cls, msg_type, /, **fields)\n--\n\n"
    b"The compiled MessageFactory.create_message (installed as its classmethod): looks msg_type\n"
    b"up in cls._kinds and calls that kind with the keyword fields, without packing them into a\n"
    b"dict; errors go through the pure factory's create_generic, so they are the same."
)
create_message = PyCFunction_NewEx(&_create_message_def, NULL, NULL)
