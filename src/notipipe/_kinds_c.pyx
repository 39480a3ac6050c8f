# cython: language_level=3, freethreading_compatible=True
"""Compiled twin of ``_kinds_py`` (the type truth): a registered kind called through C.

``install`` first installs the pure twin's generated ``__init__`` and ``_row`` (they stay the
class's, for what the C path leaves to them), then gives the class:

* a C constructor: the class's ``tp_vectorcall`` (a call to a class takes it when set, instead of
  ``type.__call__``). It binds the caller's arguments by a per-class table built here (the
  fields in signature order, the positional count, defaults, each field's type code and slot
  offset), checks each value in C, allocates the object with the class's ``tp_alloc`` and stores
  each value once at its slot before anyone else can see the object. Anything outside the common
  case (an unusual call, a value the pure twin converts or refuses, a default factory) is handed
  to ``type.__call__``, which runs the generated ``__init__``: the errors are the pure twin's
  own, by construction;
* a compiled ``_row``: the same row, its JSON text written in C; ``rows(batch)``, the writer's
  rows of a batch, makes an installed kind's in C without calling its ``_row`` (unless the class
  changed since, as for the constructor).

The table is built completely before ``tp_vectorcall`` is set and never changes afterwards (a
class is installed once): free threads only read it. A class whose attributes change after
registration (its type version tag changes, e.g. a new ``__init__``) is called through
``type.__call__`` from then on, so the C path never bypasses what the class says now.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.time cimport time as _now
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, strlen
from libc.math cimport isfinite
from libc.stdio cimport snprintf

from json.encoder import encode_basestring_ascii

from notipipe import _kinds_py
from notipipe._kinds import COMMON_FIELDS, ENCODING_VERSION, _descriptor
from notipipe._limits import MAX_PRIORITY, MIN_PRIORITY, TIME_LIMIT

__all__ = ["install", "rows"]

cdef long _MIN_PRIORITY = MIN_PRIORITY
cdef long _MAX_PRIORITY = MAX_PRIORITY
cdef double _TIME_LIMIT = TIME_LIMIT

# How a field's value is checked (and written as JSON).
cdef enum:
    _STR = 0
    _INT = 1
    _FLOAT = 2
    _BOOL = 3
    _PRIORITY = 4
    _ID = 5
    _TIME = 6

# The most fields a kind called through C may have; a larger one keeps the generated __init__.
cdef enum:
    _MAX_FIELDS = 32

cdef extern from *:
    """
    #define notipipe_is_str(o) PyUnicode_CheckExact(o)
    #define notipipe_is_float(o) PyFloat_CheckExact(o)
    #define notipipe_is_int(o) PyLong_CheckExact(o)
    #define notipipe_is_bool(o) PyBool_Check(o)
    #define notipipe_float_value(o) PyFloat_AS_DOUBLE(o)
    #define notipipe_slot(o, offset) (*(PyObject **)((char *)(o) + (offset)))

    /* The slot's offset of a member descriptor of an object slot, -1 for any other member. */
    static Py_ssize_t notipipe_member_offset(PyObject *descr) {
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        return (m->type == Py_T_OBJECT_EX && !(m->flags & Py_READONLY)) ? m->offset : -1;
    }

    /* An exact int as a C long long; 0 with *ok unset for one beyond int64 (no exception). */
    static long long notipipe_int64(PyObject *o, int *ok) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        *ok = !overflow && !(v == -1 && PyErr_Occurred());
        if (!*ok) PyErr_Clear();
        return v;
    }

    static int notipipe_encodable_str(PyObject *s) {
        /* UTF-8 cannot encode a lone surrogate; only the 2- and 4-byte kinds can hold one. */
        Py_ssize_t i, n = PyUnicode_GET_LENGTH(s);
        int kind = PyUnicode_KIND(s);
        if (kind == PyUnicode_1BYTE_KIND) return 1;
        for (i = 0; i < n; i++) {
            if (Py_UNICODE_IS_SURROGATE(PyUnicode_READ(kind, PyUnicode_DATA(s), i))) return 0;
        }
        return 1;
    }

    static unsigned int notipipe_version(PyObject *type) {
        return __atomic_load_n(&((PyTypeObject *)type)->tp_version_tag, __ATOMIC_RELAXED);
    }

    static int notipipe_assign_version(PyObject *type) {
    #if PY_VERSION_HEX >= 0x030C0000
        return PyUnstable_Type_AssignVersionTag((PyTypeObject *)type);
    #else
        return 0;
    #endif
    }

    static int notipipe_has_vectorcall(PyObject *type) {
        return ((PyTypeObject *)type)->tp_vectorcall != NULL;
    }

    static void notipipe_publish_vectorcall(PyObject *type, void *call) {
        /* Release: a thread that takes this entry sees every write made before (the table). */
        __atomic_store_n(&((PyTypeObject *)type)->tp_vectorcall, (vectorcallfunc)call, __ATOMIC_RELEASE);
    }

    static int notipipe_plain_new(PyObject *type) {
        return ((PyTypeObject *)type)->tp_new == PyBaseObject_Type.tp_new;
    }

    static PyObject *notipipe_alloc(PyObject *type) {
        return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    }

    /* An instance holding only exact str, int, float, bool or None can be in no reference
       cycle: the collector need not track it, as CPython untracks such tuples and dicts. */
    static void notipipe_untrack(PyObject *o) {
        if (PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
    }

    /* ASCII text already escaped: a str of exactly these characters (one copy). */
    static PyObject *notipipe_ascii_text(const char *data, Py_ssize_t size) {
        PyObject *text = PyUnicode_New(size, 127);
        if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), data, size);
        return text;
    }

    #define notipipe_type_call(cls, args, kwargs) (PyType_Type.tp_call((cls), (args), (kwargs)))

    /* A strong reference to d[k] (see _messages_c). */
    #if PY_VERSION_HEX >= 0x030D0000
    #define notipipe_kind_get(d, k, out) PyDict_GetItemRef((d), (k), (out))
    #else
    static int notipipe_kind_get(PyObject *d, PyObject *k, PyObject **out) {
        *out = PyDict_GetItemWithError(d, k);
        if (*out == NULL) return PyErr_Occurred() ? -1 : 0;
        Py_INCREF(*out);
        return 1;
    }
    #endif
    """
    bint _is_str "notipipe_is_str"(PyObject* o) noexcept
    bint _is_float "notipipe_is_float"(PyObject* o) noexcept
    bint _is_int "notipipe_is_int"(PyObject* o) noexcept
    bint _is_bool "notipipe_is_bool"(PyObject* o) noexcept
    bint _is_ascii "PyUnicode_IS_ASCII"(PyObject* o) noexcept
    double _float_value "notipipe_float_value"(PyObject* o) noexcept
    PyObject* _slot "notipipe_slot"(PyObject* o, Py_ssize_t offset) noexcept
    Py_ssize_t _member_offset "notipipe_member_offset"(object descr) noexcept
    long long _int64 "notipipe_int64"(PyObject* o, int* ok) noexcept
    bint _encodable "notipipe_encodable_str"(PyObject* s) noexcept
    unsigned int _version "notipipe_version"(object type) noexcept
    int _assign_version "notipipe_assign_version"(object type) except -1
    bint _has_vectorcall "notipipe_has_vectorcall"(object type) noexcept
    void _publish_vectorcall "notipipe_publish_vectorcall"(object type, void* call) noexcept
    bint _plain_new "notipipe_plain_new"(object type) noexcept
    object _alloc "notipipe_alloc"(object type)
    void _untrack "notipipe_untrack"(PyObject* o) noexcept
    object _type_call "notipipe_type_call"(object cls, object args, object kwargs)
    object _ascii_text "notipipe_ascii_text"(const char* data, Py_ssize_t size)
    int _kind_get "notipipe_kind_get"(object d, object k, PyObject** out) except -1
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    Py_ssize_t _tuple_size "PyTuple_GET_SIZE"(PyObject* t)
    PyObject* _tuple_item "PyTuple_GET_ITEM"(PyObject* t, Py_ssize_t i)
    void _incref "Py_INCREF"(PyObject* o)
    void _decref "Py_DECREF"(PyObject* o)
    object _float "PyFloat_FromDouble"(double v)
    int PyUnicode_Compare(PyObject* a, PyObject* b) noexcept  # exact str both: never fails
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) noexcept
    void PyErr_Clear() noexcept
    const char* _bytes_data "PyBytes_AS_STRING"(PyObject* o) noexcept
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject* o) noexcept
    void PyMem_Free(void* p)
    int Py_DTSF_ADD_DOT_0
    int PyUnicode_1BYTE_KIND
    int PyUnicode_KIND(PyObject* s)
    void* PyUnicode_DATA(PyObject* s)
    unsigned int PyUnicode_READ(int kind, void* data, Py_ssize_t i)
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject* s)

cdef extern from *:
    """
    static void notipipe_store(PyObject *o, Py_ssize_t offset, PyObject *v) {
        *(PyObject **)((char *)o + offset) = v;  /* takes the reference; the slot was NULL */
    }
    """
    void _store "notipipe_store"(PyObject* o, Py_ssize_t offset, PyObject* v) noexcept


cdef object _NO_DEFAULT = object()
cdef object _TRUE = True


cdef class _Kind:
    """One registered class's table: built once, at install, and only read afterwards."""

    cdef object cls
    cdef object name              # the kind's name (the row's first column)
    cdef object python_row        # the generated _row: for whatever the compiled one does not expect
    cdef tuple names              # signature order: positional fields, then keyword-only ones
    cdef tuple defaults           # per field: its default, or _NO_DEFAULT (required or a factory)
    cdef Py_ssize_t nfields
    cdef Py_ssize_t npos
    cdef Py_ssize_t offsets[_MAX_FIELDS]
    cdef int codes[_MAX_FIELDS]
    cdef bint optional[_MAX_FIELDS]
    cdef bint now_default         # created_at's default (0.0 or None) means "now"
    cdef bint untrack             # its instances hold nothing but their fields (see _only_fields)
    cdef unsigned int version     # the class's version tag when the table was built
    # the row: the kind's own fields in declaration order, each with its JSON key text
    cdef Py_ssize_t nown
    cdef Py_ssize_t own_offsets[_MAX_FIELDS]
    cdef int own_codes[_MAX_FIELDS]
    cdef bint own_optional[_MAX_FIELDS]
    cdef bytes head               # '{"v": 1, "fields": {'
    cdef tuple own_keys           # bytes: '"device": ', then ', "title": ', ...
    cdef Py_ssize_t priority_offset
    cdef Py_ssize_t created_at_offset


cdef dict _TABLES = {}  # class -> _Kind; an entry is added once and never replaced or removed


cdef int _code(f) except -1:
    if f.name == "priority":
        return _PRIORITY
    if f.name == "id":
        return _ID
    if f.name == "created_at":
        return _TIME
    return {str: _STR, int: _INT, float: _FLOAT, bool: _BOOL}[f.type]


cdef _Kind _table(str name, type cls, tuple fields, object python_row):
    """The class's table; None where the C path cannot take the class (it keeps __init__)."""
    if (
        len(fields) > _MAX_FIELDS
        or type(cls) is not type  # a metaclass may have its own __call__
        or not _plain_new(cls)
        or hasattr(cls, "__post_init__")
        or _has_vectorcall(cls)
    ):
        return None
    cdef _Kind k = _Kind()
    cdef Py_ssize_t i, offset
    ordered = [f for f in fields if not f.kw_only] + [f for f in fields if f.kw_only]
    k.cls = cls
    k.name = name
    k.python_row = python_row
    k.nfields = len(ordered)
    k.npos = sum(1 for f in fields if not f.kw_only)
    k.names = tuple(f.name for f in ordered)
    k.defaults = tuple(
        _NO_DEFAULT if f.factory is not None or f.required else f.default for f in ordered
    )
    offsets = {}
    for f in fields:
        offset = _member_offset(_descriptor(cls, f.name))
        if offset < 0:
            return None
        offsets[f.name] = offset
    for i, f in enumerate(ordered):
        k.offsets[i] = offsets[f.name]
        k.codes[i] = _code(f)
        k.optional[i] = f.optional
        if f.name == "created_at":
            k.now_default = f.default is None or (type(f.default) is float and f.default == 0.0)
    own = [f for f in fields if f.name not in COMMON_FIELDS]
    k.nown = len(own)
    keys = []
    for i, f in enumerate(own):
        k.own_offsets[i] = offsets[f.name]
        k.own_codes[i] = _code(f)
        k.own_optional[i] = f.optional
        keys.append(((", " if i else "") + encode_basestring_ascii(f.name) + ": ").encode("ascii"))
    k.own_keys = tuple(keys)
    k.head = f'{{"v": {ENCODING_VERSION}, "fields": {{'.encode("ascii")
    k.priority_offset = offsets["priority"]
    k.created_at_offset = offsets["created_at"]
    k.untrack = _only_fields(cls, offsets)
    return k


cdef bint _only_fields(type cls, dict fields):
    """Whether the class's instances have no slot but its fields (and ``__weakref__``): then an
    instance the C path made holds only the plain values it checked, and no reference cycle can
    go through it. A slot of another name (a mixin's cache, say) could hold anything."""
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in ((slots,) if isinstance(slots, str) else slots):
            if slot not in fields and slot != "__weakref__":
                return False
    return True


def install(name, cls, fields):
    """As ``_kinds_py.install``, then the class is called, and its row made, through C."""
    with_id = _kinds_py.install(name, cls, fields)
    cdef _Kind k = _table(name, cls, tuple(fields), cls.__dict__["_row"])
    if k is None:
        return with_id
    type.__setattr__(cls, "_row", _compiled_row(k))
    if not _assign_version(cls):
        return with_id  # no version tag to guard the C path with: type.__call__ it stays
    k.version = _version(cls)
    _TABLES[cls] = k
    _publish_vectorcall(cls, <void*>_call_kind)
    return with_id


# -- the constructor -----------------------------------------------------------------------------


cdef inline bint _common_case(_Kind k, Py_ssize_t i, PyObject* v) noexcept:
    """Whether the pure twin's __init__ takes ``v`` for field ``i`` as it is (no conversion)."""
    cdef int code = k.codes[i], ok = 0
    cdef long long n
    cdef double d
    if v == <PyObject*>None:
        return k.optional[i]
    if code == _STR:
        return _is_str(v) and _encodable(v)
    if code == _BOOL:
        return _is_bool(v)
    if code == _FLOAT:
        return _is_float(v) and isfinite(_float_value(v))
    if not _is_int(v):
        return False
    n = _int64(v, &ok)
    if code == _PRIORITY:
        return ok and _MIN_PRIORITY <= n <= _MAX_PRIORITY
    if code == _ID:
        return ok and n >= 0
    return ok  # _INT


cdef bint _bind(_Kind k, PyObject** args, Py_ssize_t nargs, PyObject* kwnames, PyObject** out) noexcept:
    """Place the arguments in ``out`` (borrowed, signature order); False: bind them slowly."""
    cdef Py_ssize_t i, j, nfields = k.nfields
    cdef PyObject* name
    cdef PyObject* names = <PyObject*>k.names
    if nargs > k.npos:
        return False
    for i in range(nfields):
        out[i] = NULL
    for i in range(nargs):
        out[i] = args[i]
    if kwnames is not NULL:
        for i in range(_tuple_size(kwnames)):
            name = _tuple_item(kwnames, i)
            j = 0
            while j < nfields and name != _tuple_item(names, j):
                j += 1
            if j == nfields:  # a name built at run time: the same text, another object
                j = 0
                while j < nfields and not (
                    _is_str(name) and PyUnicode_GET_LENGTH(name) == PyUnicode_GET_LENGTH(_tuple_item(names, j))
                    and PyUnicode_Compare(name, _tuple_item(names, j)) == 0
                ):
                    j += 1
            if j == nfields or out[j] is not NULL:
                return False  # unknown, or given twice: Python's own error
            out[j] = args[nargs + i]
    for i in range(nargs, nfields):
        if out[i] is NULL:
            if _tuple_item(<PyObject*>k.defaults, i) == <PyObject*>_NO_DEFAULT:
                return False  # required (Python says so) or a factory (the generated __init__ calls it)
            out[i] = _tuple_item(<PyObject*>k.defaults, i)
    return True


cdef object _slow_call(object cls, PyObject** args, Py_ssize_t nargs, PyObject* kwnames):
    """type.__call__: the generated __init__ binds, converts, or explains."""
    positional = tuple([<object>args[i] for i in range(nargs)])
    cdef Py_ssize_t nkw = 0 if kwnames is NULL else _tuple_size(kwnames)
    keywords = {<object>_tuple_item(kwnames, i): <object>args[nargs + i] for i in range(nkw)}
    return _type_call(cls, positional, keywords)


cdef object _call_kind(object cls, PyObject** args, size_t nargsf, PyObject* kwnames):
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), i
    cdef PyObject* found = NULL
    cdef PyObject* v[_MAX_FIELDS]
    cdef PyObject* obj
    cdef PyObject* value
    cdef double stamp
    if not _kind_get(_TABLES, cls, &found):
        return _slow_call(cls, args, nargs, kwnames)
    cdef _Kind k = <_Kind>found
    _decref(found)  # k holds the strong reference
    if _version(cls) != k.version or not _bind(k, args, nargs, kwnames, v):
        return _slow_call(cls, args, nargs, kwnames)
    stamp = -1.0
    for i in range(k.nfields):
        if k.codes[i] == _TIME:
            value = v[i]
            if value == <PyObject*>None or (
                k.now_default and _is_float(value) and _float_value(value) == 0.0
            ):
                stamp = _now()
            elif not (_is_float(value) and 0.0 < _float_value(value) < _TIME_LIMIT):
                return _slow_call(cls, args, nargs, kwnames)
        elif not _common_case(k, i, v[i]):
            return _slow_call(cls, args, nargs, kwnames)
    time_value = _float(stamp) if stamp >= 0.0 else None
    made = _alloc(cls)  # zeroed, and not yet seen by any other thread
    obj = <PyObject*>made
    for i in range(k.nfields):
        value = v[i]
        if k.codes[i] == _TIME and stamp >= 0.0:
            value = <PyObject*>time_value
        _incref(value)
        _store(obj, k.offsets[i], value)
    # Every field passed _common_case (exact atomic types, as creation requires of every kind's
    # field) and the object has no other slot: no cycle can go through it, so collections,
    # which kinds created by the million would trigger over and over, need not look at it.
    if k.untrack:
        _untrack(obj)
    return made


# -- the row ------------------------------------------------------------------------------------

cdef struct _Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity
    char[512] local


cdef int _reserve(_Buffer* b, Py_ssize_t more) noexcept:
    """Room for ``more`` bytes: 0, or -1 out of memory."""
    cdef Py_ssize_t wanted = b.size + more
    cdef char* grown
    if wanted <= b.capacity:
        return 0
    wanted = max(wanted, 2 * b.capacity)
    if b.data == b.local:
        grown = <char*>malloc(wanted)
        if grown is not NULL:
            memcpy(grown, b.data, b.size)
    else:
        grown = <char*>realloc(b.data, wanted)
    if grown is NULL:
        return -1
    b.data = grown
    b.capacity = wanted
    return 0


cdef inline int _append(_Buffer* b, const char* text, Py_ssize_t n) noexcept:
    if _reserve(b, n) < 0:
        return -1
    memcpy(b.data + b.size, text, n)
    b.size += n
    return 0


cdef const char* _HEX = b"0123456789abcdef"


cdef inline void _unit(_Buffer* b, unsigned int c) noexcept:
    # \uXXXX, lowercase, as json.encoder.encode_basestring_ascii writes it (room reserved)
    b.data[b.size] = c'\\'
    b.data[b.size + 1] = c'u'
    b.data[b.size + 2] = _HEX[(c >> 12) & 0xf]
    b.data[b.size + 3] = _HEX[(c >> 8) & 0xf]
    b.data[b.size + 4] = _HEX[(c >> 4) & 0xf]
    b.data[b.size + 5] = _HEX[c & 0xf]
    b.size += 6


cdef inline bint _plain_ascii(const unsigned char* text, Py_ssize_t n) noexcept:
    """Whether ASCII ``text`` has nothing JSON escapes (quote, backslash, control characters)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = text[i]
        if c < 0x20 or c == 0x22 or c == 0x5c or c == 0x7f:
            return False
    return True


cdef int _append_str(_Buffer* b, PyObject* s) noexcept:
    """``json.encoder.encode_basestring_ascii(s)``: quoted, escaped, ASCII."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(s)
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef unsigned int c
    if _reserve(b, 12 * n + 2) < 0:  # the longest escape: a surrogate pair
        return -2
    b.data[b.size] = c'"'
    b.size += 1
    if _is_ascii(s) and _plain_ascii(<const unsigned char*>data, n):  # the common case: one copy
        memcpy(b.data + b.size, data, n)
        b.size += n
        n = 0
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c >= c' ' and c <= c'~' and c != c'"' and c != c'\\':
            b.data[b.size] = <char>c
            b.size += 1
        elif c == c'"' or c == c'\\' or c == c'\n' or c == c'\r' or c == c'\t' or c == 8 or c == 12:
            b.data[b.size] = c'\\'
            b.data[b.size + 1] = (
                c'"' if c == c'"' else c'\\' if c == c'\\' else c'n' if c == c'\n'
                else c'r' if c == c'\r' else c't' if c == c'\t' else c'b' if c == 8 else c'f'
            )
            b.size += 2
        elif c >= 0x10000:
            c -= 0x10000
            _unit(b, 0xd800 | ((c >> 10) & 0x3ff))
            _unit(b, 0xdc00 | (c & 0x3ff))
        else:
            _unit(b, c)
    b.data[b.size] = c'"'
    b.size += 1
    return 0


cdef int _append_value(_Buffer* b, int code, bint optional, PyObject* v) noexcept:
    """The value's JSON text: 0; -1 where the value is not of its field's type (the generated
    _row decides what that gives); -2 out of memory."""
    cdef int ok = 0
    cdef long long n
    cdef char* text
    cdef char digits[24]
    cdef Py_ssize_t length = 0
    if v == <PyObject*>None:
        return -1 if not optional else _appended(_append(b, "null", 4))
    if code == _STR and _is_str(v):
        return _append_str(b, v)
    if code == _BOOL and _is_bool(v):
        return _appended(_append(b, "true", 4) if v == <PyObject*>_TRUE else _append(b, "false", 5))
    if code == _FLOAT and _is_float(v) and isfinite(_float_value(v)):
        # float.__repr__'s own conversion; it raises only out of memory
        text = PyOS_double_to_string(_float_value(v), c'r', 0, Py_DTSF_ADD_DOT_0, NULL)
        if text is NULL:
            PyErr_Clear()
            return -2
        length = strlen(text)
        ok = _append(b, text, length)
        PyMem_Free(text)
        return _appended(ok)
    if code == _INT and _is_int(v):
        n = _int64(v, &ok)
        if ok:
            return _appended(_append(b, digits, snprintf(digits, sizeof(digits), "%lld", n)))
    return -1


cdef inline int _appended(int result) noexcept:
    return -2 if result < 0 else 0


cdef object _row_of(_Kind k, object message):
    cdef _Buffer b
    cdef Py_ssize_t i
    cdef PyObject* o = <PyObject*>message
    cdef PyObject* priority = _slot(o, k.priority_offset)
    cdef PyObject* created_at = _slot(o, k.created_at_offset)
    cdef PyObject* value
    if type(message) is not k.cls or priority is NULL or created_at is NULL:
        return k.python_row(message)
    b.data = b.local
    b.size = 0
    b.capacity = sizeof(b.local)
    # No try block (entering one costs a thread-state lookup): every exit frees the buffer.
    cdef int done = _fields_text(k, o, &b)
    text = _ascii_text(b.data, b.size) if done == 0 else None
    if b.data != b.local:
        free(b.data)
    if done == -2:
        raise MemoryError()
    if done == -1:
        return k.python_row(message)
    row = (k.name, <object>created_at, <object>priority, "", "", text)
    # Texts and numbers only, as CPython leaves such tuples untracked at their first collection:
    # the writer's rows, made a batch at a time, would otherwise fill every young generation.
    # (The two common fields are checked here too: a value set past the constructor may be any.)
    if type(<object>created_at) is float and type(<object>priority) is int:
        _untrack(<PyObject*>row)
    return row


cdef int _fields_text(_Kind k, PyObject* o, _Buffer* b) noexcept:
    """The JSON text of the kind's own fields into ``b``: 0, or -1 for a field whose value is
    not of its type (or not set), -2 out of memory."""
    cdef Py_ssize_t i
    cdef PyObject* value
    cdef PyObject* key
    if _append(b, k.head, len(k.head)) < 0:
        return -2
    for i in range(k.nown):
        value = _slot(o, k.own_offsets[i])
        if value is NULL:
            return -1
        key = _tuple_item(<PyObject*>k.own_keys, i)
        if _append(b, _bytes_data(key), _bytes_size(key)) < 0:
            return -2
        done = _append_value(b, k.own_codes[i], k.own_optional[i], value)
        if done < 0:
            return done
    return -2 if _append(b, "}}", 2) < 0 else 0


def rows(batch):
    # A kind this twin installed has its row made here, not through its ``_row`` method (a call
    # per alert, which the writer would make by the million); a class changed since, or any
    # other message, is asked for its ``_row``.
    cdef list made = []
    cdef object last = None
    cdef _Kind k = None
    cdef PyObject* found
    for message in batch:
        cls = type(message)
        if cls is not last:
            last, k, found = cls, None, NULL
            if _kind_get(_TABLES, cls, &found):
                k = <_Kind>found
                _decref(found)  # k holds the strong reference
        if k is not None and _version(cls) == k.version:
            made.append(_row_of(k, message))
        else:
            made.append(message._row())
    return made


rows.__doc__ = _kinds_py.rows.__doc__  # the pure twin's words, as its signature


def _compiled_row(_Kind k):
    """The class's ``_row`` method: the table's row, in C."""
    def _row(self):
        """The store's row: (kind, created_at, priority, "", "", the fields as JSON)."""
        return _row_of(k, self)

    _row.__qualname__ = f"{k.cls.__qualname__}._row"
    _row.__module__ = k.cls.__module__
    _row.__wrapped__ = k.python_row  # inspect shows the generated source: the same row
    return _row
