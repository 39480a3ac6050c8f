# cython: language_level=3, freethreading_compatible=True
"""Compiled SQLite row writer: the twin of ``_sqlite_py.py`` (the type truth), with the same rows,
rowids and errors.

The stdlib's ``execute`` costs a lookup in its statement cache, a parameter list and a type
dispatch per value, and a copy of every text; this twin keeps one prepared statement per size
on the store's own stdlib connection and binds each value straight from the message's fields
(the texts' UTF-8 bytes in place, held by strong references until the step is done): the whole
batch's values are read and checked with the GIL held, then its statements bound and stepped in
one stretch without it (one hand-over of the GIL per batch, not per statement). The functions are SQLite's own, looked up in the library the stdlib's
``_sqlite3`` module is linked with: one SQLite in the process (two copies on one file would undo
each other's POSIX locks), and nothing to link at build time.

Whatever it does not expect goes to the stdlib, as the pure twin sends it: a value of another
type (a subclass, None, an int past 64 bits, a text that is not UTF-8), a statement SQLite
refuses while the transaction is still open (the stdlib runs it again and raises its own error),
or a library it cannot use (every statement then). Only a failure that ended the transaction
(a full disk, an I/O error) is raised here, as the stdlib would raise it: running the statement
again outside the transaction would commit it on its own.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.exc cimport PyErr_Clear
from libc.stdint cimport uintptr_t

import sqlite3

from notipipe._sqlite_py import insert_sql, parameters, statement_sizes

__all__ = ["Inserter", "insert_sql"]

cdef extern from *:
    """
    /* The stdlib's sqlite3.Connection: its sqlite3* comes first after the object header
       (CPython 3.8 to 3.14). */
    typedef struct { PyObject_HEAD void *db; } notipipe_sqlite_conn;
    """
    ctypedef struct notipipe_sqlite_conn:
        void* db

cdef extern from "Python.h":
    # NULL with the error set (declared so: the caller clears it and goes to the stdlib).
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size)
    PyObject* _list_item "PyList_GET_ITEM"(object l, Py_ssize_t i)  # borrowed
    PyObject* _tuple_item "PyTuple_GET_ITEM"(object t, Py_ssize_t i)  # borrowed

include "_fields.pxi"

ctypedef int (*prepare_f)(void* db, const char* sql, int n, void** stmt, const char** tail) noexcept nogil
ctypedef int (*bind_text_f)(void* stmt, int i, const char* text, int n, void* destructor) noexcept nogil
ctypedef int (*bind_double_f)(void* stmt, int i, double value) noexcept nogil
ctypedef int (*bind_int64_f)(void* stmt, int i, long long value) noexcept nogil
ctypedef int (*stmt_f)(void* stmt) noexcept nogil
ctypedef int (*db_int_f)(void* db) noexcept nogil
ctypedef long long (*rowid_f)(void* db) noexcept nogil
ctypedef const char* (*errmsg_f)(void* db) noexcept nogil
ctypedef int (*version_f)() noexcept nogil
ctypedef void* (*db_mutex_f)(void* db) noexcept nogil
ctypedef void (*mutex_f)(void* mutex) noexcept nogil

# A value ready to bind, read with the GIL held and bound without it.
cdef struct _Value:
    int type  # _TEXT, _FLOAT, _INTEGER
    const char* text
    int size
    double real
    long long integer

cdef enum:
    _TEXT = 0
    _FLOAT = 1
    _INTEGER = 2
    _OK = 0
    _DONE = 101
    _COLUMNS = 6
    # Statement slots: one per power of two (by bit length), and the full size.
    _SLOTS = 66
    _FULL = 65

# SQLite's functions, from the library the stdlib's module uses (see _load).
cdef struct _Api:
    prepare_f prepare
    bind_text_f bind_text
    bind_double_f bind_double
    bind_int64_f bind_int64
    stmt_f step
    stmt_f reset
    stmt_f clear_bindings
    stmt_f finalize
    db_int_f get_autocommit
    db_int_f errcode
    db_int_f extended_errcode
    rowid_f last_insert_rowid
    errmsg_f errmsg
    db_mutex_f db_mutex
    mutex_f mutex_enter
    mutex_f mutex_leave

cdef _Api _api
cdef int _api_state = 0  # 0 not looked up yet, 1 usable, -1 not usable
_NAMES = (
    "prepare_v2", "bind_text", "bind_double", "bind_int64", "step", "reset", "clear_bindings",
    "finalize", "get_autocommit", "errcode", "extended_errcode", "last_insert_rowid", "errmsg",
    "db_mutex", "mutex_enter", "mutex_leave",
)


cdef int _load() except -1:
    """Look SQLite's functions up once: in the stdlib module's own library (its symbols and those
    it was linked with), on Windows in the sqlite3 DLL it loaded. Unusable (the stdlib path for
    every statement) if any is missing or the library is not the version the stdlib reports."""
    global _api_state
    if _api_state != 0:
        return 0
    _api_state = -1
    try:
        import ctypes
        import os
        import _sqlite3

        try:
            lib = ctypes.CDLL(_sqlite3.__file__)
            lib.sqlite3_step
        except (OSError, AttributeError):
            if os.name != "nt":
                return 0
            lib = ctypes.CDLL("sqlite3")
        found = [ctypes.cast(getattr(lib, "sqlite3_" + name), ctypes.c_void_p).value for name in _NAMES]
        version = ctypes.cast(lib.sqlite3_libversion_number, ctypes.c_void_p).value
    except (ImportError, OSError, AttributeError):
        return 0
    if not all(found) or not version:
        return 0
    major, minor, patch = sqlite3.sqlite_version_info
    if (<version_f><uintptr_t>version)() != major * 1000000 + minor * 1000 + patch:
        return 0
    _api.prepare = <prepare_f><uintptr_t>found[0]
    _api.bind_text = <bind_text_f><uintptr_t>found[1]
    _api.bind_double = <bind_double_f><uintptr_t>found[2]
    _api.bind_int64 = <bind_int64_f><uintptr_t>found[3]
    _api.step = <stmt_f><uintptr_t>found[4]
    _api.reset = <stmt_f><uintptr_t>found[5]
    _api.clear_bindings = <stmt_f><uintptr_t>found[6]
    _api.finalize = <stmt_f><uintptr_t>found[7]
    _api.get_autocommit = <db_int_f><uintptr_t>found[8]
    _api.errcode = <db_int_f><uintptr_t>found[9]
    _api.extended_errcode = <db_int_f><uintptr_t>found[10]
    _api.last_insert_rowid = <rowid_f><uintptr_t>found[11]
    _api.errmsg = <errmsg_f><uintptr_t>found[12]
    _api.db_mutex = <db_mutex_f><uintptr_t>found[13]
    _api.mutex_enter = <mutex_f><uintptr_t>found[14]
    _api.mutex_leave = <mutex_f><uintptr_t>found[15]
    _api_state = 1
    return 0


# -- the stdlib's errors, for a failure that ended the transaction ----------------------------------

_PRIMARY = (
    "OK", "ERROR", "INTERNAL", "PERM", "ABORT", "BUSY", "LOCKED", "NOMEM", "READONLY", "INTERRUPT",
    "IOERR", "CORRUPT", "NOTFOUND", "FULL", "CANTOPEN", "PROTOCOL", "EMPTY", "SCHEMA", "TOOBIG",
    "CONSTRAINT", "MISMATCH", "MISUSE", "NOLFS", "AUTH", "FORMAT", "RANGE", "NOTADB", "NOTICE",
    "WARNING",
)
_ERROR_NAMES = None


cdef str _error_name(int code):
    """The name the stdlib gives a result code (``sqlite_errorname``)."""
    global _ERROR_NAMES
    if _ERROR_NAMES is None:
        names = {}
        for attr in dir(sqlite3):
            if attr.startswith("SQLITE_") and any(
                attr == "SQLITE_" + p or attr.startswith("SQLITE_" + p + "_") for p in _PRIMARY
            ):
                names.setdefault(getattr(sqlite3, attr), attr)
        _ERROR_NAMES = names
    return _ERROR_NAMES.get(code, "unknown")


cdef object _error_class(int primary):
    # As the stdlib's module maps SQLite's primary result codes to its exceptions.
    if primary == 2 or primary == 12:  # INTERNAL, NOTFOUND
        return sqlite3.InternalError
    if primary == 7:  # NOMEM
        return MemoryError
    if primary in (1, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 16, 17):
        return sqlite3.OperationalError
    if primary == 18:  # TOOBIG
        return sqlite3.DataError
    if primary == 19 or primary == 20:  # CONSTRAINT, MISMATCH
        return sqlite3.IntegrityError
    if primary == 21 or primary == 25:  # MISUSE, RANGE
        return sqlite3.InterfaceError
    return sqlite3.DatabaseError


cdef object _error(void* db):
    cdef int extended = _api.extended_errcode(db)
    message = (<bytes>_api.errmsg(db)).decode("utf-8", "replace")
    cls = _error_class(_api.errcode(db) & 0xFF)
    if cls is MemoryError:
        return MemoryError()
    error = cls(message)
    error.sqlite_errorcode = extended
    error.sqlite_errorname = _error_name(extended)
    return error


cdef class Inserter:
    """Writes batches on ``conn`` in statements of at most ``per_statement`` rows: see
    ``_sqlite_py.Inserter``."""

    cdef object _conn
    cdef void* _db
    cdef Py_ssize_t _per_statement
    cdef object _email_cls
    cdef object _sms_cls
    cdef _Field _email[_FIELDS]
    cdef _Field _sms[_FIELDS]
    cdef void* _stmts[_SLOTS]
    # The batch's values (strong references while it is bound and stepped, NULL otherwise) and
    # what each binds as; room for _capacity values.
    cdef PyObject** _values
    cdef _Value* _ready
    cdef Py_ssize_t _capacity

    def __init__(self, conn, Py_ssize_t per_statement, email_cls, sms_cls):
        if per_statement < 1:
            raise ValueError(f"per_statement must be >= 1, got {per_statement}")
        if self._values is not NULL:
            raise RuntimeError("Inserter.__init__ called twice")
        self._conn = conn
        self._per_statement = per_statement
        self._email_cls = email_cls
        self._sms_cls = sms_cls
        _find_fields(self._email, self._sms, email_cls, sms_cls)
        self._reserve(per_statement * _COLUMNS)
        _load()
        if _api_state == 1 and isinstance(conn, sqlite3.Connection):
            self._db = (<notipipe_sqlite_conn*><PyObject*>conn).db

    @property
    def compiled(self):
        """Whether values are bound through SQLite's C API (False: the stdlib for every one)."""
        return self._db is not NULL

    def insert(self, list items):
        """Insert ``items``' rows in the caller's transaction; their rowids, in order: see
        ``_sqlite_py.Inserter.insert``."""
        if self._conn is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed inserter.")
        cdef list sizes = statement_sizes(len(items), self._per_statement)
        cdef list ids = []
        cdef Py_ssize_t i = 0
        cdef long long last
        # Through SQLite's API only inside the caller's transaction (a connection closed under
        # the stdlib's object, or no BEGIN, takes the stdlib's path and meets its errors).
        if self._db is NULL or self._conn_closed() or _api.get_autocommit(self._db) != 0:
            for n in sizes:
                last = self._through_stdlib(items, i, n)
                ids.extend(range(last - n + 1, last + 1))
                i += n
            return ids
        cdef _Batch batch = _Batch(sizes)
        self._reserve(len(items) * _COLUMNS)
        try:
            self._run(items, batch)
        finally:
            self._release(len(items) * _COLUMNS)
        for k in range(batch.count):
            last = batch.lasts[k]
            ids.extend(range(last - batch.rows[k] + 1, last + 1))
        return ids

    cdef int _run(self, list items, _Batch batch) except -1:
        """Every statement of the batch: values read and checked with the GIL held, then as many
        statements as go through bound and stepped in one stretch without it; a statement this
        twin does not bind, or that SQLite refuses, goes to the stdlib."""
        cdef Py_ssize_t k, end = batch.count
        cdef int rc = _OK
        cdef bint in_transaction = True
        failure = None
        for k in range(batch.count):
            batch.stmts[k] = self._prepared(batch.rows[k])
            try:
                batch.ready[k] = batch.stmts[k] is not NULL and not (
                    self._gather(items, batch.starts[k], batch.rows[k])
                    or self._prepare_values(batch.starts[k] * _COLUMNS, batch.rows[k] * _COLUMNS)
                )
            except BaseException as error:
                # Raised once the statements before it are in, as the stdlib's path would.
                failure = error
                end = k
                break
        k = 0
        while k < end:
            in_transaction = True
            with nogil:
                k = self._step_from(batch, k, end, &rc, &in_transaction)
            if k == end:
                break
            if batch.ready[k] and not in_transaction:
                raise _error(self._db)
            # Not bound here, or refused within the transaction (a constraint, say): the stdlib
            # meets it again and raises its own error.
            batch.lasts[k] = self._through_stdlib(items, batch.starts[k], batch.rows[k])
            k += 1
        if failure is not None:
            raise failure
        return 0

    cdef Py_ssize_t _step_from(
        self, _Batch batch, Py_ssize_t k, Py_ssize_t end, int* rc, bint* in_transaction
    ) noexcept nogil:
        """Bind and step the batch's statements from ``k`` on, the connection's mutex taken once
        (each bind would take it); the first one not done (``end``: none)."""
        cdef void* mutex = _api.db_mutex(self._db)
        cdef void* stmt
        _api.mutex_enter(mutex)
        while k < end and batch.ready[k]:
            stmt = batch.stmts[k]
            rc[0] = self._bind(stmt, batch.starts[k] * _COLUMNS, batch.rows[k] * _COLUMNS)
            if rc[0] == _OK:
                rc[0] = _api.step(stmt)
                _api.reset(stmt)
            _api.clear_bindings(stmt)
            if rc[0] != _DONE:
                # A value SQLite would not bind leaves the transaction open: the stdlib's to meet.
                in_transaction[0] = _api.get_autocommit(self._db) == 0
                break
            batch.lasts[k] = _api.last_insert_rowid(self._db)
            k += 1
        _api.mutex_leave(mutex)
        return k

    cdef int _reserve(self, Py_ssize_t count) except -1:
        cdef PyObject** values
        cdef _Value* ready
        if count <= self._capacity:
            return 0
        values = <PyObject**>PyMem_Calloc(count, sizeof(PyObject*))
        ready = <_Value*>PyMem_Malloc(count * sizeof(_Value))
        if values is NULL or ready is NULL:
            PyMem_Free(values)
            PyMem_Free(ready)
            raise MemoryError()
        PyMem_Free(self._values)  # holds nothing between batches
        PyMem_Free(self._ready)
        self._values = values
        self._ready = ready
        self._capacity = count
        return 0

    def close(self):
        """Finalize the prepared statements and let go of the connection (idempotent); the store
        closes the connection, after this."""
        cdef int k
        if self._db is not NULL:
            for k in range(_SLOTS):
                if self._stmts[k] is not NULL:
                    _api.finalize(self._stmts[k])
                    self._stmts[k] = NULL
            self._db = NULL
        self._conn = None

    def __dealloc__(self):
        cdef int k
        if self._values is not NULL:
            self._release(self._capacity)
        if self._db is not NULL:
            for k in range(_SLOTS):
                if self._stmts[k] is not NULL:
                    _api.finalize(self._stmts[k])
        PyMem_Free(self._values)
        PyMem_Free(self._ready)
        _release_fields(self._email)
        _release_fields(self._sms)

    cdef bint _conn_closed(self):
        # The stdlib's close() sets its db pointer to NULL.
        return (<notipipe_sqlite_conn*><PyObject*>self._conn).db is not self._db

    cdef long long _through_stdlib(self, list items, Py_ssize_t start, Py_ssize_t n) except? -1:
        params = parameters(items[start : start + n], self._email_cls, self._sms_cls)
        return int(self._conn.execute(insert_sql(n), params).lastrowid or 0)

    cdef void* _prepared(self, Py_ssize_t n) except? NULL:
        """The prepared statement of ``n`` rows (NULL: SQLite would not prepare it)."""
        cdef int slot = _FULL if n == self._per_statement else (<object>n).bit_length()
        cdef void* stmt = self._stmts[slot]
        cdef bytes sql
        cdef int rc
        if stmt is NULL:
            sql = insert_sql(n).encode()
            rc = _api.prepare(self._db, sql, <int>len(sql), &stmt, NULL)
            if rc != _OK:
                _api.finalize(stmt)
                return NULL
            self._stmts[slot] = stmt
        return stmt

    cdef void _release(self, Py_ssize_t count) noexcept:
        cdef Py_ssize_t j
        for j in range(count):
            if self._values[j] is not NULL:
                Py_DECREF(<object>self._values[j])
                self._values[j] = NULL

    cdef int _gather(self, list items, Py_ssize_t start, Py_ssize_t n) except -1:
        """The rows' values into ``_values`` at their place (strong references); 1 if a row is not
        one this twin binds (a tuple of another length, another item)."""
        cdef Py_ssize_t r, c
        cdef PyObject* item
        cdef PyObject* cls
        cdef PyObject** out = self._values + start * _COLUMNS
        cdef _Field* fields
        cdef str kind
        for r in range(n):
            item = _list_item(items, start + r)
            cls = <PyObject*>_type_of(item)
            if cls is <PyObject*>self._email_cls:
                fields = self._email
                kind = _EMAIL
            elif cls is <PyObject*>self._sms_cls:
                fields = self._sms
                kind = _SMS
            else:
                if cls is not <PyObject*>tuple or len(<tuple>item) != _COLUMNS:
                    return 1
                for c in range(_COLUMNS):
                    out[c] = _tuple_item(<tuple>item, c)
                    Py_INCREF(<object>out[c])
                out += _COLUMNS
                continue
            Py_INCREF(kind)
            out[0] = <PyObject*>kind
            out[1] = _read(&fields[_F_CREATED_AT], <object>item)
            out[2] = _read(&fields[_F_PRIORITY], <object>item)
            out[3] = _read(&fields[_F_ADDRESS], <object>item)
            out[4] = _read_subject(fields, <object>item)
            out[5] = _read(&fields[_F_BODY], <object>item)
            out += _COLUMNS
        return 0

    cdef int _prepare_values(self, Py_ssize_t first, Py_ssize_t count):
        """What the gathered values bind as; 1 if one is not of a type bound here as the stdlib
        binds it. The texts' bytes are their own, alive while ``_values`` holds them."""
        cdef Py_ssize_t j, size
        cdef PyObject* value
        cdef PyObject* cls
        cdef _Value* ready
        cdef int overflow
        for j in range(first, first + count):
            value = self._values[j]
            cls = <PyObject*>_type_of(value)
            ready = &self._ready[j]
            if cls is <PyObject*>str:
                ready.text = PyUnicode_AsUTF8AndSize(<object>value, &size)
                if ready.text is NULL:
                    PyErr_Clear()
                    return 1
                if size > 0x7FFFFFFF:
                    return 1
                ready.type = _TEXT
                ready.size = <int>size
            elif cls is <PyObject*>float:
                ready.type = _FLOAT
                ready.real = <double><object>value
            elif cls is <PyObject*>int:
                overflow = 0
                ready.integer = PyLong_AsLongLongAndOverflow(<object>value, &overflow)
                if overflow:
                    return 1
                ready.type = _INTEGER
            else:
                return 1
        return 0

    cdef int _bind(self, void* stmt, Py_ssize_t first, Py_ssize_t count) noexcept nogil:
        """Bind the prepared values (SQLITE_STATIC texts: not copied); SQLite's error, if any."""
        cdef Py_ssize_t j
        cdef _Value* ready
        cdef int rc = _OK
        for j in range(count):
            ready = &self._ready[first + j]
            if ready.type == _TEXT:
                rc = _api.bind_text(stmt, <int>j + 1, ready.text, ready.size, NULL)
            elif ready.type == _FLOAT:
                rc = _api.bind_double(stmt, <int>j + 1, ready.real)
            else:
                rc = _api.bind_int64(stmt, <int>j + 1, ready.integer)
            if rc != _OK:
                return rc
        return _OK


cdef class _Batch:
    """A batch's statements: their rows, first row, prepared statement, whether their values are
    ready to bind, and the rowid of each one's last row."""

    cdef Py_ssize_t count
    cdef Py_ssize_t* rows
    cdef Py_ssize_t* starts
    cdef void** stmts
    cdef bint* ready
    cdef long long* lasts

    def __cinit__(self, list sizes):
        cdef Py_ssize_t k, start = 0
        self.count = len(sizes)
        n = max(self.count, 1)
        self.rows = <Py_ssize_t*>PyMem_Calloc(n, sizeof(Py_ssize_t))
        self.starts = <Py_ssize_t*>PyMem_Calloc(n, sizeof(Py_ssize_t))
        self.stmts = <void**>PyMem_Calloc(n, sizeof(void*))
        self.ready = <bint*>PyMem_Calloc(n, sizeof(bint))
        self.lasts = <long long*>PyMem_Calloc(n, sizeof(long long))
        if not (self.rows and self.starts and self.stmts and self.ready and self.lasts):
            raise MemoryError()
        for k in range(self.count):
            self.rows[k] = sizes[k]
            self.starts[k] = start
            start += self.rows[k]

    def __dealloc__(self):
        PyMem_Free(self.rows)
        PyMem_Free(self.starts)
        PyMem_Free(self.stmts)
        PyMem_Free(self.ready)
        PyMem_Free(self.lasts)
