# A message's fields as the compiled writers read them (``_chunk_c``'s encode_messages and
# ``_sqlite_c``'s Inserter): included by both, so that each reads an e-mail and an SMS alike and
# the same as the pure twins (an include, not a module: the functions inline into each writer).

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

cdef extern from "Python.h":
    ctypedef PyObject* (*descrgetfunc)(PyObject* descr, PyObject* obj, PyObject* cls)
    ctypedef struct _Type "PyTypeObject":
        void* tp_getattro
        descrgetfunc tp_descr_get
    void* PyObject_GenericGetAttr
    PyObject* PyObject_GetAttr(PyObject* obj, PyObject* name)  # a new reference, or NULL
    PyTypeObject* PyDescr_TYPE(object descr)
    _Type* _type_of "Py_TYPE"(PyObject* o)
    bint PyType_IsSubtype(PyTypeObject* a, PyTypeObject* b)

cdef type _GETSET = type(type.__dict__["__name__"])
cdef type _MEMBER = type(type.__dict__["__basicsize__"])

# A message's field as a writer reads it.
cdef struct _Field:
    PyObject* name  # the attribute's name (a module constant)
    PyObject* descr  # a strong reference, or NULL: read by PyObject_GetAttr
    descrgetfunc get

# The kinds' names as a row holds them, and an SMS's subject.
cdef str _EMAIL = "email"
cdef str _SMS = "sms"
cdef str _EMPTY = ""
cdef str _CREATED_AT = "created_at"
cdef str _PRIORITY = "priority"
cdef str _RECIPIENT = "recipient"
cdef str _SUBJECT_NAME = "subject"
cdef str _PHONE_NUMBER = "phone_number"
cdef str _BODY_NAME = "body"
# The fields read, in the order the pure twins read them: an e-mail's, an SMS's (an SMS has no
# subject: its row's is "").
cdef enum:
    _F_CREATED_AT = 0
    _F_PRIORITY = 1
    _F_ADDRESS = 2
    _F_SUBJECT = 3
    _F_BODY = 4
    _FIELDS = 5


cdef int _find_field(_Field* field, object cls, str name):
    """Where an instance of exactly ``cls`` keeps ``name``: a C slot's descriptor (a getset or
    member descriptor on ``cls`` or a base, a data descriptor, so ``instance.name`` is what its
    ``__get__`` gives, no instance ``__dict__`` coming first) is called directly, without the
    attribute lookup; anything else is read as an attribute."""
    field.name = <PyObject*>name
    field.descr = NULL
    field.get = NULL
    if type(cls) is not type or (<_Type*><PyObject*>cls).tp_getattro != PyObject_GenericGetAttr:
        return 0
    try:
        descr = getattr(cls, name)
    except Exception:
        return 0  # the instance's attribute read raises what it raises, in its turn
    if type(descr) is not _GETSET and type(descr) is not _MEMBER:
        return 0
    if not PyType_IsSubtype(<PyTypeObject*>cls, PyDescr_TYPE(descr)):
        return 0
    Py_INCREF(descr)
    field.descr = <PyObject*>descr
    field.get = _type_of(<PyObject*>descr).tp_descr_get
    return 0


cdef int _find_fields(_Field* email, _Field* sms, object email_cls, object sms_cls) except -1:
    """Both kinds' fields, each array ``_FIELDS`` long (released by ``_release_fields``)."""
    _find_field(&email[_F_CREATED_AT], email_cls, _CREATED_AT)
    _find_field(&email[_F_PRIORITY], email_cls, _PRIORITY)
    _find_field(&email[_F_ADDRESS], email_cls, _RECIPIENT)
    _find_field(&email[_F_SUBJECT], email_cls, _SUBJECT_NAME)
    _find_field(&email[_F_BODY], email_cls, _BODY_NAME)
    _find_field(&sms[_F_CREATED_AT], sms_cls, _CREATED_AT)
    _find_field(&sms[_F_PRIORITY], sms_cls, _PRIORITY)
    _find_field(&sms[_F_ADDRESS], sms_cls, _PHONE_NUMBER)
    sms[_F_SUBJECT].name = NULL  # an SMS has no subject: the row's is ""
    _find_field(&sms[_F_BODY], sms_cls, _BODY_NAME)
    return 0


cdef void _release_fields(_Field* fields) noexcept:
    """Let go of the descriptors ``_find_fields`` kept (an array ``_FIELDS`` long)."""
    cdef int j
    for j in range(_FIELDS):
        Py_XDECREF(fields[j].descr)


cdef inline PyObject* _read(_Field* field, object message) except NULL:
    """The field's value (a new reference)."""
    if field.get is not NULL:
        return field.get(field.descr, <PyObject*>message, <PyObject*>_type_of(<PyObject*>message))
    return PyObject_GetAttr(<PyObject*>message, field.name)


cdef inline PyObject* _read_subject(_Field* fields, object message) except NULL:
    """The row's subject (a new reference): an SMS's is ""."""
    if fields[_F_SUBJECT].name is NULL:
        Py_INCREF(_EMPTY)
        return <PyObject*>_EMPTY
    return _read(&fields[_F_SUBJECT], message)
