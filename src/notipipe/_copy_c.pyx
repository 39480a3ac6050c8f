# cython: language_level=3, freethreading_compatible=True
"""Compiled COPY packer: the twin of ``_copy_py.py`` (the type truth and the format's
description), byte for byte the same, with the same errors.

``pack_rows`` measures every row first, then allocates the bytes object once and writes into it
in C. The rows are copied into a tuple first, so another thread changing the caller's list
cannot change what is measured between the two passes. A row whose fields are not the plain
types the writer builds (exact ``str`` texts, a ``float`` time, ``int`` numbers within their
columns) goes through the pure twin, alone, which packs it or raises as it does.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from notipipe import _copy_py

__all__ = ["COPY_HEADER", "COPY_TRAILER", "pack_rows"]

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

COPY_HEADER = _copy_py.COPY_HEADER
COPY_TRAILER = _copy_py.COPY_TRAILER

# Per row: the field count (2), then 9 lengths (4 each), id (8), created_at (8), priority (4),
# origin_pid (4): the bytes besides the five texts.
cdef Py_ssize_t _FIXED = 2 + 9 * 4 + 8 + 8 + 4 + 4


cdef inline uint8_t* _put_u16(uint8_t* out, uint32_t value) noexcept nogil:
    out[0] = <uint8_t>(value >> 8)
    out[1] = <uint8_t>value
    return out + 2


cdef inline uint8_t* _put_u32(uint8_t* out, uint32_t value) noexcept nogil:
    out[0] = <uint8_t>(value >> 24)
    out[1] = <uint8_t>(value >> 16)
    out[2] = <uint8_t>(value >> 8)
    out[3] = <uint8_t>value
    return out + 4


cdef inline uint8_t* _put_u64(uint8_t* out, uint64_t value) noexcept nogil:
    out = _put_u32(out, <uint32_t>(value >> 32))
    return _put_u32(out, <uint32_t>value)


cdef inline uint8_t* _put_text(uint8_t* out, const char* utf8, Py_ssize_t n) noexcept nogil:
    out = _put_u32(out, <uint32_t>n)
    memcpy(out, utf8, n)
    return out + n


cdef inline bint _plain_int(object value, int64_t low, int64_t high) noexcept:
    """``value`` is an int (not a bool, which the pure twin packs alike) within [low, high]."""
    cdef int overflow = 0
    cdef long long n
    if type(value) is not int:
        return False
    n = PyLong_AsLongLongAndOverflow(value, &overflow)
    return not overflow and low <= n <= high


cdef inline int64_t _int(object value) noexcept:
    # Checked by _plain_int in the first pass; ints are immutable.
    cdef int overflow = 0
    return PyLong_AsLongLongAndOverflow(value, &overflow)


cdef Py_ssize_t _size(object ident, bint with_id, object row, Py_ssize_t host_n) except -2:
    """The packed size of a row the writer builds (exact types, in range, encodable), else -1:
    the pure twin packs it, or raises what it raises for it."""
    # Without an id: one length (4) and the id (8) fewer.
    cdef Py_ssize_t n, size = (_FIXED if with_id else _FIXED - 12) + host_n
    if type(row) is not tuple or len(<tuple>row) != 6:
        return -1
    if with_id and not _plain_int(ident, INT64_MIN, INT64_MAX):
        return -1
    kind, created_at, priority, address, subject, body = <tuple>row
    if type(created_at) is not float or not _plain_int(priority, INT32_MIN, INT32_MAX):
        return -1
    for text in (kind, address, subject, body):
        if type(text) is not str:
            return -1
        try:
            PyUnicode_AsUTF8AndSize(text, &n)
        except UnicodeEncodeError:  # a lone surrogate: the pure twin's encode() raises it
            return -1
        size += n
    return size


def pack_rows(ids, rows, host, pid):
    """The COPY data of rows of (kind, created_at, priority, address, subject, body) that are
    not None, each with its id of ``ids`` (by position), all from ``host``/``pid``;
    ``COPY_HEADER`` goes before the first, ``COPY_TRAILER`` after the last. With ``ids`` None
    the rows have no id field (a COPY without the id column: the table gives them theirs)."""
    cdef bint with_ids = ids is not None
    cdef tuple items = tuple(rows)
    cdef tuple idents = tuple(ids) if with_ids else (None,) * len(items)
    cdef Py_ssize_t count = len(items), i, n, size = 0, host_n = 0, measured
    cdef const char* host_utf8 = NULL
    if type(host) is str:
        try:
            host_utf8 = PyUnicode_AsUTF8AndSize(host, &host_n)
        except UnicodeEncodeError:
            host_utf8 = NULL
    if len(idents) != count or host_utf8 == NULL or not _plain_int(pid, INT32_MIN, INT32_MAX):
        # Raises as the pure twin does, or packs.
        return _copy_py.pack_rows(idents if with_ids else None, items, host, pid)
    cdef list sizes = [None] * count  # a plain row's size, or another row's bytes (pure-packed)
    for i in range(count):
        row = items[i]
        if row is None:
            continue
        measured = _size(idents[i], with_ids, row, host_n)
        if measured >= 0:
            sizes[i] = measured
            size += measured
        else:
            piece = _copy_py.pack_rows((idents[i],) if with_ids else None, (row,), host, pid)
            sizes[i] = piece
            size += len(<bytes>piece)
    data = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t* out = <uint8_t*>PyBytes_AS_STRING(data)
    cdef const char* utf8
    cdef double created_at
    cdef uint64_t bits
    for i in range(count):
        row = items[i]
        if row is None:
            continue
        if type(sizes[i]) is bytes:
            piece = sizes[i]
            memcpy(out, PyBytes_AS_STRING(piece), len(<bytes>piece))
            out += len(<bytes>piece)
            continue
        kind, created_at_obj, priority, address, subject, body = <tuple>row
        if with_ids:
            out = _put_u16(out, 9)
            out = _put_u32(out, 8)
            out = _put_u64(out, <uint64_t>_int(idents[i]))
        else:
            out = _put_u16(out, 8)
        utf8 = PyUnicode_AsUTF8AndSize(kind, &n)
        out = _put_text(out, utf8, n)
        created_at = created_at_obj
        memcpy(&bits, &created_at, 8)
        out = _put_u32(out, 8)
        out = _put_u64(out, bits)
        out = _put_u32(out, 4)
        out = _put_u32(out, <uint32_t><int32_t>_int(priority))
        utf8 = PyUnicode_AsUTF8AndSize(address, &n)
        out = _put_text(out, utf8, n)
        utf8 = PyUnicode_AsUTF8AndSize(subject, &n)
        out = _put_text(out, utf8, n)
        utf8 = PyUnicode_AsUTF8AndSize(body, &n)
        out = _put_text(out, utf8, n)
        out = _put_text(out, host_utf8, host_n)
        out = _put_u32(out, 4)
        out = _put_u32(out, <uint32_t><int32_t>_int(pid))
    return data
