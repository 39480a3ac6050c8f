# cython: language_level=3, freethreading_compatible=True
"""Compiled chunk codec: the twin of ``_chunk_py.py`` (the type truth and the layout's
description), byte for byte the same, with the same errors.

``encode_chunk`` checks every row and sums the chunk's size first, then allocates the bytes
object once and writes into it in C; ``decode_chunk`` walks the buffer with a C pointer. The rows
are copied into a tuple first, so another thread changing the caller's list cannot change what
is measured between the two passes. ``encode_messages`` reads each e-mail's and SMS's fields
into a C array in the first pass (strong references: what the second pass writes is what the
first measured), with no row tuple. ``decode_messages`` walks it the same way and calls each
row's class through vectorcall with the keyword names as one constant tuple (the compiled
classes' own vectorcall entries match them by identity): no row tuple, no argument dict.
"""

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.exc cimport PyErr_Clear, PyErr_ExceptionMatches
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject, PyTypeObject
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.string cimport memcmp, memcpy, memset

__all__ = ["MAGIC", "VERSION", "decode_chunk", "decode_messages", "encode_chunk", "encode_messages"]

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL
    object PyObject_Vectorcall(object callable, PyObject** args, size_t nargsf, PyObject* kwnames)
    # A new reference, or NULL with the error set (declared so: no exception check made here).
    PyObject* PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)

include "_fields.pxi"

MAGIC = b"NP"
VERSION = 1
cdef uint8_t _VERSION = 1
cdef tuple _KEYWORDS = ("priority", "created_at", "id")
cdef str _KIND_ERROR = "kind: expected 'email' or 'sms', got {!r}"
cdef object _INT64 = 2**63
# String slots of a reader: another kind's name, the address for each kind code (0, 1, 2), the
# subject, the body.
cdef enum:
    _KIND_NAME = 0
    _ADDRESS = 1  # + the kind code
    _SUBJECT = 4
    _BODY = 5
    _SLOTS = 6


cdef inline Py_ssize_t _varint_size(uint64_t value) noexcept nogil:
    cdef Py_ssize_t n = 1
    while value >= 0x80:
        value >>= 7
        n += 1
    return n


cdef inline uint8_t* _put_varint(uint8_t* out, uint64_t value) noexcept nogil:
    while value >= 0x80:
        out[0] = <uint8_t>((value & 0x7F) | 0x80)
        out += 1
        value >>= 7
    out[0] = <uint8_t>value
    return out + 1


cdef inline uint8_t* _put_double(uint8_t* out, double value) noexcept nogil:
    cdef uint64_t bits
    cdef int i
    memcpy(&bits, &value, 8)
    for i in range(8):
        out[i] = <uint8_t>(bits >> (8 * i))
    return out + 8


cdef inline uint8_t* _put_string(uint8_t* out, const char* text, Py_ssize_t n) noexcept nogil:
    out = _put_varint(out, <uint64_t>n)
    memcpy(out, text, n)
    return out + n


cdef inline Py_ssize_t _text_size(object text) except -1:
    cdef Py_ssize_t n
    if type(text) is not str:
        raise TypeError(f"a chunk row's text must be str, got {type(text).__name__}")
    PyUnicode_AsUTF8AndSize(text, &n)
    return _varint_size(<uint64_t>n) + n


cdef inline uint8_t* _write_text(uint8_t* out, object text):
    cdef Py_ssize_t n
    cdef const char* utf8 = PyUnicode_AsUTF8AndSize(text, &n)
    return _put_string(out, utf8, n)


cdef inline uint64_t _zigzag(int64_t value) noexcept nogil:
    return (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)


cdef int64_t _priority(object priority) except? -1:
    cdef int overflow = 0
    cdef long long value
    if not isinstance(priority, int):
        raise TypeError(f"a chunk row's priority must be int, got {type(priority).__name__}")
    value = PyLong_AsLongLongAndOverflow(priority, &overflow)
    if overflow:
        raise ValueError(f"a chunk row's priority must fit in 64 bits, got {priority}")
    return value


cdef inline int64_t _as_int64(object value) except? -1:
    # Checked by _priority in the first pass already; the tuple cannot have changed since.
    cdef int overflow = 0
    return PyLong_AsLongLongAndOverflow(value, &overflow)


def encode_chunk(rows):
    """The bytes of ``rows``: see ``_chunk_py.encode_chunk``."""
    cdef tuple items = tuple(rows)
    cdef Py_ssize_t count = len(items)
    cdef Py_ssize_t size = 3 + _varint_size(<uint64_t>count)
    cdef Py_ssize_t i
    cdef object row, kind, created_at
    cdef list priorities = []
    cdef int64_t priority
    for i in range(count):
        row = items[i]
        if type(row) is not tuple or len(<tuple>row) != 6:
            raise TypeError(f"a chunk row must be a tuple of 6 items, got {type(row).__name__}")
        kind = (<tuple>row)[0]
        if type(kind) is not str:
            raise TypeError(f"a chunk row's kind must be str, got {type(kind).__name__}")
        size += 1
        if kind != _EMAIL and kind != _SMS:
            size += _text_size(kind)
        created_at = (<tuple>row)[1]
        if not isinstance(created_at, float):
            raise TypeError(f"a chunk row's created_at must be float, got {type(created_at).__name__}")
        size += 8
        priority = _priority((<tuple>row)[2])
        size += _varint_size(_zigzag(priority))
        size += _text_size((<tuple>row)[3])
        size += _text_size((<tuple>row)[4])
        size += _text_size((<tuple>row)[5])
    cdef bytes result = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(result)
    out[0] = 78  # 'N'
    out[1] = 80  # 'P'
    out[2] = _VERSION
    out = _put_varint(out + 3, <uint64_t>count)
    for i in range(count):
        row = items[i]
        kind = (<tuple>row)[0]
        if kind == _EMAIL:
            out[0] = 1
            out += 1
        elif kind == _SMS:
            out[0] = 2
            out += 1
        else:
            out[0] = 0
            out = _write_text(out + 1, kind)
        out = _put_double(out, <double>(<tuple>row)[1])
        out = _put_varint(out, _zigzag(_as_int64((<tuple>row)[2])))
        out = _write_text(out, (<tuple>row)[3])
        out = _write_text(out, (<tuple>row)[4])
        out = _write_text(out, (<tuple>row)[5])
    return result


cdef extern from "Python.h":
    PyObject* _tuple_item "PyTuple_GET_ITEM"(object t, Py_ssize_t i)  # borrowed


cdef struct _Fields:
    # One row as encode_messages keeps it between its passes: the kind's code, the texts (strong
    # references, or NULL), the numbers.
    PyObject* kind
    PyObject* address
    PyObject* subject
    PyObject* body
    double created_at
    int64_t priority
    int code


cdef Py_ssize_t _check_row(_Fields* row, object kind, object created_at, object priority) except -1:
    """Check a row's fields as ``encode_chunk`` does, in its order (the texts in ``row`` already),
    keep the numbers in ``row``, and return the bytes the row takes."""
    cdef Py_ssize_t size = 1
    if type(kind) is not str:
        raise TypeError(f"a chunk row's kind must be str, got {type(kind).__name__}")
    if kind is _EMAIL or kind == _EMAIL:
        row.code = 1
    elif kind is _SMS or kind == _SMS:
        row.code = 2
    else:
        row.code = 0
        size += _text_size(kind)
    if not isinstance(created_at, float):
        raise TypeError(f"a chunk row's created_at must be float, got {type(created_at).__name__}")
    size += 8
    cdef int64_t value = _priority(priority)
    size += _varint_size(_zigzag(value))
    size += _text_size(<object>row.address)
    size += _text_size(<object>row.subject)
    size += _text_size(<object>row.body)
    row.created_at = <double>created_at
    row.priority = value
    return size


cdef list _others(tuple items, object email_cls, object sms_cls):
    """The items of another class than those two, in order (borrowed pointers walked: most
    chunks have none)."""
    cdef Py_ssize_t i
    cdef PyObject* cls
    cdef list others = None
    for i in range(len(items)):
        cls = <PyObject*>_type_of(_tuple_item(items, i))
        if cls is not <PyObject*>email_cls and cls is not <PyObject*>sms_cls:
            if others is None:
                others = []
            others.append(<object>_tuple_item(items, i))
    return others


cdef list _other_rows(list others, object to_rows):
    if others is None:
        return None
    cdef list rows = list(to_rows(others))
    if len(rows) != len(others):
        raise ValueError(f"to_rows gave {len(rows)} rows for {len(others)} messages")
    return rows


cdef inline object _owned(PyObject* value):
    """An object for a new reference, which it takes over."""
    cdef object result = <object>value
    Py_DECREF(result)
    return result


cdef Py_ssize_t _measure_message(_Fields* row, _Field* fields, object message, object kind) except -1:
    # The fields read in the pure twin's order; the texts kept in row as they are read (so that
    # what was read is released whatever fails next).
    created_at = _owned(_read(&fields[_F_CREATED_AT], message))
    priority = _owned(_read(&fields[_F_PRIORITY], message))
    row.address = _read(&fields[_F_ADDRESS], message)
    row.subject = _read_subject(fields, message)
    row.body = _read(&fields[_F_BODY], message)
    return _check_row(row, kind, created_at, priority)


cdef Py_ssize_t _measure_row(_Fields* row, object given) except -1:
    if type(given) is not tuple or len(<tuple>given) != 6:
        raise TypeError(f"a chunk row must be a tuple of 6 items, got {type(given).__name__}")
    cdef tuple items = <tuple>given
    kind = items[0]
    Py_INCREF(kind)
    row.kind = <PyObject*>kind
    Py_INCREF(items[3])
    row.address = <PyObject*>items[3]
    Py_INCREF(items[4])
    row.subject = <PyObject*>items[4]
    Py_INCREF(items[5])
    row.body = <PyObject*>items[5]
    return _check_row(row, kind, items[1], items[2])


cdef uint8_t* _put_fields(uint8_t* out, _Fields* row):
    out[0] = <uint8_t>row.code
    out += 1
    if row.code == 0:
        out = _write_text(out, <object>row.kind)
    out = _put_double(out, row.created_at)
    out = _put_varint(out, _zigzag(row.priority))
    out = _write_text(out, <object>row.address)
    out = _write_text(out, <object>row.subject)
    return _write_text(out, <object>row.body)


cdef class _Rows:
    """encode_messages' rows between its passes: a C array, its references released by the
    owner's end whatever happened."""

    cdef _Fields* rows
    cdef Py_ssize_t count
    cdef _Field email[_FIELDS]
    cdef _Field sms[_FIELDS]

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.rows is not NULL:
            for i in range(self.count):
                Py_XDECREF(self.rows[i].kind)
                Py_XDECREF(self.rows[i].address)
                Py_XDECREF(self.rows[i].subject)
                Py_XDECREF(self.rows[i].body)
            PyMem_Free(self.rows)
        _release_fields(self.email)
        _release_fields(self.sms)


cdef _Rows _new_rows(Py_ssize_t count, object email_cls, object sms_cls):
    cdef _Rows rows = _Rows.__new__(_Rows)
    _find_fields(rows.email, rows.sms, email_cls, sms_cls)
    # Zeroed: a row is released whatever part of it was filled.
    rows.rows = <_Fields*>PyMem_Calloc(max(count, 1), sizeof(_Fields))
    if rows.rows is NULL:
        raise MemoryError()
    return rows


def encode_messages(messages, email_cls, sms_cls, to_rows):
    """The bytes of the chunk of ``messages``, no row tuple for an e-mail or an SMS: see
    ``_chunk_py.encode_messages``."""
    cdef tuple items = tuple(messages)
    cdef Py_ssize_t count = len(items)
    cdef list given = _other_rows(_others(items, email_cls, sms_cls), to_rows)
    cdef Py_ssize_t size = 3 + _varint_size(<uint64_t>count)
    cdef Py_ssize_t i, k = 0
    cdef _Rows rows = _new_rows(count, email_cls, sms_cls)
    cdef _Fields* row
    cdef object m, cls
    for i in range(count):
        m = items[i]
        cls = type(m)
        row = &rows.rows[i]
        rows.count = i + 1
        if cls is email_cls:
            row.kind = <PyObject*>_EMAIL
            Py_INCREF(_EMAIL)
            size += _measure_message(row, rows.email, m, _EMAIL)
        elif cls is sms_cls:
            row.kind = <PyObject*>_SMS
            Py_INCREF(_SMS)
            size += _measure_message(row, rows.sms, m, _SMS)
        else:
            size += _measure_row(row, given[k])
            k += 1
    cdef bytes result = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(result)
    out[0] = 78  # 'N'
    out[1] = 80  # 'P'
    out[2] = _VERSION
    out = _put_varint(out + 3, <uint64_t>count)
    for i in range(count):
        out = _put_fields(out, &rows.rows[i])
    return result


@cython.final
cdef class _Reader:
    cdef const uint8_t* data
    cdef Py_ssize_t size
    cdef Py_ssize_t pos
    # The last string read in each slot: where its bytes are, how many, the str (in slots).
    cdef Py_ssize_t slot_start[_SLOTS]
    cdef Py_ssize_t slot_size[_SLOTS]
    cdef list slots
    cdef int code  # the kind code of the row being read

    cdef int byte(self) except -1:
        if self.pos >= self.size:
            raise ValueError(f"notipipe chunk truncated at byte {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    cdef uint64_t varint(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t value = 0
        cdef int shift = 0
        cdef int b
        while True:
            b = self.byte()
            if shift >= 64 or (shift == 63 and (b & 0x7F) > 1):
                raise ValueError(f"notipipe chunk has a varint longer than 64 bits at byte {self.pos}")
            value |= (<uint64_t>(b & 0x7F)) << shift
            if b < 0x80:
                return value
            shift += 7

    cdef Py_ssize_t need(self, uint64_t n) except -1:
        if n > <uint64_t>(self.size - self.pos):
            raise ValueError(f"notipipe chunk truncated at byte {self.size}")
        return <Py_ssize_t>n

    cdef double double(self) except? -1.0:
        cdef uint64_t bits = 0
        cdef double value
        cdef int i
        self.need(8)
        for i in range(8):
            bits |= (<uint64_t>self.data[self.pos + i]) << (8 * i)
        self.pos += 8
        memcpy(&value, &bits, 8)
        return value

    cdef str string(self, int slot):
        """The next string; ``slot`` (0 to ``_SLOTS - 1``) names the field it is, so that a field
        holding the same bytes as in the row before gives the same str object (an address
        repeats from alert to alert: no second allocation, no second decoding)."""
        cdef Py_ssize_t n = self.need(self.varint())
        cdef Py_ssize_t start = self.pos
        cdef PyObject* text
        self.pos += n
        if n == 0:
            return ""
        if self.slot_size[slot] == n and memcmp(self.data + self.slot_start[slot], self.data + start, n) == 0:
            return <str>PyList_GET_ITEM(self.slots, slot)
        text = PyUnicode_DecodeUTF8(<const char*>(self.data + start), n, NULL)
        if text is NULL:  # no try block: it would save the exception state for every string
            _not_utf8(start)
        self.slots[slot] = <str>text
        Py_DECREF(<object>text)  # the list holds it now
        self.slot_start[slot] = start
        self.slot_size[slot] = n
        return <str>text


cdef int _not_utf8(Py_ssize_t start) except -1:
    """Raise the pending error: a ``UnicodeDecodeError`` as the chunk's ``ValueError``."""
    if PyErr_ExceptionMatches(UnicodeDecodeError):
        PyErr_Clear()
        raise ValueError(f"notipipe chunk holds text that is not UTF-8 at byte {start}")
    return -1  # another error (MemoryError) propagates as it is


cdef _Reader _open(bytes buffer):
    """A reader past the chunk's header; ``ValueError`` for a header that is not version 1's."""
    cdef Py_ssize_t size = len(buffer)
    if buffer[:2] != MAGIC:
        raise ValueError("not a notipipe chunk (its first bytes are not b'NP')")
    if size < 3:
        raise ValueError("notipipe chunk truncated at byte 2")
    if buffer[2] != VERSION:
        raise ValueError(
            f"notipipe chunk version {buffer[2]} is unknown: this notipipe reads version {VERSION};"
            " a newer notipipe wrote it"
        )
    cdef _Reader reader = _Reader.__new__(_Reader)
    reader.data = <const uint8_t*>PyBytes_AS_STRING(buffer)
    reader.size = size
    reader.pos = 3
    reader.slots = [None] * _SLOTS
    memset(reader.slot_size, 0xFF, sizeof(reader.slot_size))  # -1: no string in any slot yet
    return reader


cdef int _end(_Reader reader) except -1:
    if reader.pos != reader.size:
        raise ValueError(f"notipipe chunk has {reader.size - reader.pos} bytes after its last row")
    return 0


cdef inline object _kind(_Reader reader):
    """The row's kind: the shared "email"/"sms" objects for their codes, else the name read."""
    cdef int code = reader.byte()
    reader.code = code
    if code == 0:
        return reader.string(_KIND_NAME)
    if code == 1:
        return _EMAIL
    if code == 2:
        return _SMS
    raise ValueError(f"notipipe chunk has an unknown kind code {code} at byte {reader.pos - 1}")


cdef inline int64_t _zigzag_value(uint64_t zigzag) noexcept nogil:
    return <int64_t>((zigzag >> 1) ^ (0 - (zigzag & 1)))


def decode_chunk(data):
    """The rows of a chunk: see ``_chunk_py.decode_chunk``."""
    cdef bytes buffer = bytes(data)
    cdef _Reader reader = _open(buffer)
    cdef uint64_t count = reader.varint()
    cdef uint64_t i
    cdef object kind
    cdef double created_at
    cdef int64_t priority
    cdef list rows = []
    for i in range(count):
        kind = _kind(reader)
        created_at = reader.double()
        priority = _zigzag_value(reader.varint())
        address = reader.string(_ADDRESS + reader.code)
        subject = reader.string(_SUBJECT)
        body = reader.string(_BODY)
        rows.append((kind, created_at, priority, address, subject, body))
    _end(reader)
    return rows


def decode_messages(data, base_id, email_cls, sms_cls, other=None):
    """The alerts of a chunk, each built as it is read: see ``_chunk_py.decode_messages``."""
    if type(base_id) is not int or not 0 <= base_id < _INT64:
        raise ValueError(f"base_id must be an int from 0 to 2**63 - 1, got {base_id!r}")
    cdef int64_t base = base_id
    cdef bytes buffer = bytes(data)
    cdef _Reader reader = _open(buffer)
    cdef uint64_t count = reader.varint()
    cdef uint64_t i
    cdef object kind, created_at, priority, address, subject, body, message_id
    cdef PyObject* args[6]
    cdef list messages = []
    for i in range(count):
        kind = _kind(reader)
        created_at = reader.double()
        priority = _zigzag_value(reader.varint())
        address = reader.string(_ADDRESS + reader.code)
        subject = reader.string(_SUBJECT)
        body = reader.string(_BODY)
        message_id = base | <int64_t>i
        # Arguments as the store passes them: the fields positionally, the rest by keyword.
        args[0] = <PyObject*>address
        if kind is _EMAIL or kind == _EMAIL:
            args[1] = <PyObject*>subject
            args[2] = <PyObject*>body
            args[3] = <PyObject*>priority
            args[4] = <PyObject*>created_at
            args[5] = <PyObject*>message_id
            messages.append(PyObject_Vectorcall(email_cls, args, 3, <PyObject*>_KEYWORDS))
        elif kind is _SMS or kind == _SMS:
            args[1] = <PyObject*>body
            args[2] = <PyObject*>priority
            args[3] = <PyObject*>created_at
            args[4] = <PyObject*>message_id
            messages.append(PyObject_Vectorcall(sms_cls, args, 2, <PyObject*>_KEYWORDS))
        elif other is not None:
            messages.append(other((message_id, kind, created_at, priority, address, subject, body)))
        else:
            raise ValueError(_KIND_ERROR.format(kind))
    _end(reader)
    return messages
