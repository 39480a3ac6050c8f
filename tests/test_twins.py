"""The compiled and the pure message classes side by side: one description, one behaviour.

The rest of the suite runs every behaviour on each twin; these tests put the two modules' classes
next to each other and compare what introspection and misuse see, where a test written for one
twin could pass on both while the two still differ.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from notipipe import _messages_py

try:
    _messages_c: ModuleType | None = importlib.import_module("notipipe._messages_c")
except ImportError:
    _messages_c = None

pytestmark = [pytest.mark.twin, pytest.mark.skipif(_messages_c is None, reason="compiled twin not built")]
NAMES = ["EmailMessage", "SMSMessage"]


def _twins(name: str) -> tuple[Any, Any]:
    assert _messages_c is not None
    return getattr(_messages_c, name), getattr(_messages_py, name)


def _without_module(text: str) -> str:
    """Messages quoting a class differ in the module's name, and CPython names a C type by its
    full name where it names a Python class by its own name; the rest must be the same."""
    return text.replace("notipipe._messages_c.", "").replace("notipipe._messages_py.", "")


def _record(field: dataclasses.Field[Any]) -> tuple[object, ...]:
    return (
        field.name,
        field.type,
        field.default,
        field.default_factory,
        field.init,
        field.repr,
        field.hash,
        field.compare,
        dict(field.metadata),
        field.kw_only,
        field._field_type,  # type: ignore[attr-defined]  # field, class variable or init-only
    )


def test_the_modules_export_the_same_names_and_values() -> None:
    assert _messages_c is not None
    assert _messages_c.__all__ == _messages_py.__all__
    for name in _messages_py.__all__:
        if name not in NAMES:
            assert getattr(_messages_c, name) == getattr(_messages_py, name), name


@pytest.mark.parametrize("name", NAMES)
def test_the_classes_have_the_same_names(name: str) -> None:
    compiled, pure = _twins(name)
    # __slots__ is how the pure twin lays out its fields (the compiled one has C fields); a
    # Python class lists its __module__ in its namespace where a C type computes it, and from
    # 3.13 the compiler records where the class statement was (no C type has those).
    layout = {"__slots__", "__module__", "__firstlineno__", "__static_attributes__"}
    assert set(dir(compiled)) - layout == set(dir(pure)) - layout
    message_names = {n for n in dir(pure(created_at=1.0)) if not n.startswith("__")}
    assert message_names == {n for n in dir(compiled(created_at=1.0)) if not n.startswith("__")}


@pytest.mark.parametrize("name", NAMES)
def test_the_dataclass_descriptions_are_the_same(name: str) -> None:
    compiled, pure = _twins(name)
    assert [_record(f) for f in dataclasses.fields(compiled)] == [
        _record(f) for f in dataclasses.fields(pure)
    ]
    assert compiled.__match_args__ == pure.__match_args__ == tuple(f.name for f in dataclasses.fields(pure))
    assert repr(compiled.__dataclass_params__) == repr(pure.__dataclass_params__)
    assert typing.get_type_hints(compiled) == typing.get_type_hints(pure)
    assert compiled.kind == pure.kind
    assert compiled.__final__ is pure.__final__ is True
    # What the README promises: the fields after the text ones are keyword-only, with defaults.
    kw_only = {f.name: f.kw_only for f in dataclasses.fields(pure)}
    assert [n for n, flag in kw_only.items() if flag] == ["priority", "created_at", "id"]


@pytest.mark.parametrize("name", NAMES)
def test_the_signatures_are_the_same(name: str) -> None:
    compiled, pure = _twins(name)
    assert inspect.signature(compiled) == inspect.signature(pure)
    params = inspect.signature(pure).parameters
    assert [p.name for p in params.values()] == [f.name for f in dataclasses.fields(pure)]
    assert [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY] == ["priority", "created_at", "id"]
    # The methods both twins define: the same parameters (Cython keeps no annotations on
    # them; the stubs carry those). __eq__, __hash__ and __repr__ are C slots in one, Python
    # functions in the other, so their signatures differ in the self parameter's kind only.
    for method in ("__init__", "__new__", "__reduce__", "__replace__", "_row"):
        assert _parameters(getattr(compiled, method)) == _parameters(getattr(pure, method)), method
    # Each field's record carries the constructor's default ("now" is a factory).
    for field in dataclasses.fields(pure):
        default = params[field.name].default
        if default is None:
            assert field.default_factory is not dataclasses.MISSING
        else:
            assert field.default == default


def _parameters(function: Callable[..., object]) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _outcome(action: Callable[[], object]) -> tuple[str, str]:
    try:
        result = action()
    except Exception as error:  # noqa: BLE001 - the outcome, whatever it is, is what is compared
        return type(error).__qualname__, _without_module(str(error))
    return "ok", _without_module(repr(result))


def _sms_misuse(cls: Any) -> dict[str, Callable[[], object]]:
    msg = cls("+15551234567", "body", priority=2, created_at=1.0, id=7)
    return {
        "unknown keyword": lambda: cls(colour="red"),
        "unknown keyword spelled at run time": lambda: cls(**{"".join(["col", "our"]): "red"}),
        "keyword given twice": lambda: cls("+15551234567", phone_number="+15551234567"),
        "body given twice": lambda: cls("+15551234567", "b", body="b"),
        "too many positionals": lambda: cls("+15551234567", "b", 3),
        "too many positionals and a keyword": lambda: cls("+15551234567", "b", 3, priority=1),
        "kind as a keyword": lambda: cls(kind="sms"),
        "self as a keyword": lambda: cls(self=1),
        "replace with an unknown field": lambda: dataclasses.replace(msg, kind="email"),
        "replace with a bad value": lambda: dataclasses.replace(msg, created_at=10**400),
        "a second __init__": lambda: msg.__init__("+15550000000"),
        "unbound __init__": lambda: cls.__init__(msg, body="x"),
        "__new__": lambda: cls.__new__(cls),
        "__new__ with arguments": lambda: cls.__new__(cls, "+15551234567"),
        "type.__call__": lambda: type.__call__(cls, "+15551234567"),
        "assign a field": lambda: setattr(msg, "body", "x"),
        "assign kind": lambda: setattr(msg, "kind", "email"),
        "assign a new attribute": lambda: setattr(msg, "extra", 1),
        "delete a field": lambda: delattr(msg, "body"),
        "assign the class attribute": lambda: setattr(cls, "kind", "fax"),
        "subclass": lambda: type("Sub", (cls,), {}),
        "__setstate__": lambda: msg.__setstate__(("+1", "x", 1, 1.0, 0)),
        "__reduce__": lambda: msg.__reduce__()[1],
        "__reduce_ex__": lambda: msg.__reduce_ex__(2)[1],
        # (__getstate__ is object's, unused: pickling and copying go through __reduce__.)
        "pickle": lambda: pickle.loads(pickle.dumps(msg)),
        "copy": lambda: copy.copy(msg),
        "deepcopy": lambda: copy.deepcopy(msg),
        "__replace__": lambda: msg.__replace__(body="new"),
        "repr": lambda: repr(msg),
        "hash equal": lambda: (
            hash(msg) == hash(cls("+15551234567", "body", priority=2, created_at=1.0, id=7))
        ),
        "row": msg._row,
        "astuple": lambda: dataclasses.astuple(msg),
        "match": lambda: _match(msg),
    }


def _match(msg: Any) -> object:
    cls = type(msg)
    match msg:
        case cls(number, body, priority, created_at, id):  # positional: __match_args__
            return number, body, priority, created_at, id
    return None


def test_misuse_has_the_same_outcome_on_both_twins() -> None:
    compiled, pure = _twins("SMSMessage")
    c_outcomes = {label: _outcome(action) for label, action in _sms_misuse(compiled).items()}
    py_outcomes = {label: _outcome(action) for label, action in _sms_misuse(pure).items()}
    assert c_outcomes == py_outcomes
    # ... and each is the intended one, not merely the same.
    assert c_outcomes["unknown keyword"] == (
        "TypeError",
        "SMSMessage() got an unexpected keyword argument 'colour'",
    )
    assert c_outcomes["keyword given twice"] == (
        "TypeError",
        "SMSMessage() got multiple values for argument 'phone_number'",
    )
    assert c_outcomes["too many positionals"] == (
        "TypeError",
        "SMSMessage() takes from 0 to 2 positional arguments but 3 were given",
    )
    assert c_outcomes["a second __init__"][0] == "FrozenInstanceError"
    assert c_outcomes["__new__"][0] == c_outcomes["type.__call__"][0] == "TypeError"
    assert c_outcomes["assign kind"] == ("FrozenInstanceError", "cannot assign to field 'kind'")
    assert c_outcomes["subclass"] == (
        "TypeError",
        "type 'SMSMessage' is not an acceptable base type",
    )
    assert c_outcomes["pickle"] == (
        "ok",
        "SMSMessage(phone_number='+15551234567', body='body', priority=2, created_at=1.0, id=7)",
    )
    assert c_outcomes["match"] == ("ok", "('+15551234567', 'body', 2, 1.0, 7)")


def test_errors_for_every_bad_call_agree() -> None:
    """Each combination of a bad value and a call shape: same exception, same message."""
    bad_values: list[dict[str, object]] = [
        {"phone_number": "+0"},
        {"body": "\ud800"},
        {"body": 1},
        {"priority": 10**400},
        {"priority": True},
        {"created_at": 10**400},
        {"created_at": float("inf")},
        {"created_at": "now"},
        {"id": -1},
        {"id": 2**63},
        {"id": 1.0},
    ]
    shapes: list[Callable[[Any, dict[str, object]], object]] = [
        lambda cls, fields: cls(**fields),
        lambda cls, fields: cls(**{"".join(list(k)): v for k, v in fields.items()}),  # names made at run time
        lambda cls, fields: dataclasses.replace(cls(), **fields),
    ]
    for name in NAMES:
        compiled, pure = _twins(name)
        for bad in bad_values:
            fields: dict[str, object] = (
                {"recipient": "x@"} if "phone_number" in bad and name == "EmailMessage" else bad
            )
            for shape in shapes:
                c_outcome = _outcome(lambda: shape(compiled, fields))  # noqa: B023 - called at once
                assert c_outcome[0] in ("TypeError", "ValueError"), c_outcome
                assert c_outcome == _outcome(lambda: shape(pure, fields)), fields  # noqa: B023


@pytest.mark.parametrize("name", NAMES)
def test_the_compiled_twin_has_no_way_to_write_a_message(name: str) -> None:
    """Python's own back doors, which a pure-Python object cannot close, find no writable field
    in the compiled one: no reader can ever meet a string being replaced."""
    compiled, _ = _twins(name)
    msg = compiled(body="kept", created_at=1.0)
    doors: list[Callable[[], object]] = [
        lambda: object.__setattr__(msg, "body", "x"),
        lambda: object.__delattr__(msg, "body"),
        lambda: object.__setattr__(msg, "__class__", _messages_py.SMSMessage),
        lambda: vars(compiled)["body"].__set__(msg, "x"),
        lambda: vars(compiled)["body"].__delete__(msg),
        lambda: object.__new__(compiled),
        lambda: msg.__setstate__(("x",)),
        lambda: msg.__setstate_cython__(dataclasses.astuple(msg)),  # Cython's own pickling hook
    ]
    for door in doors:
        kind, _message = _outcome(door)
        assert kind in ("TypeError", "AttributeError"), (kind, _message)
    assert (msg.body, type(msg)) == ("kept", compiled)


# -- the public surface of each compiled module against its pure twin ---------------------------

MODULES = ["_messages", "_publisher"]


def _kind(value: object) -> str:
    """What a public name is, as a user meets it; a C type and a Python class spell each
    differently (a slot is a member or a getset descriptor, a method a function or a cyfunction)."""
    if inspect.isclass(value):
        return "class"
    if inspect.isdatadescriptor(value):
        return "attribute"
    if callable(value):
        return "callable"
    return "value"


def _signature(value: object) -> list[tuple[str, object, object]] | None:
    function = value.__func__ if isinstance(value, classmethod | staticmethod) else value
    if not callable(function):
        return None
    try:
        return _parameters(function)
    except (TypeError, ValueError):  # no signature to read (a C slot without text signature)
        return None


def _instance_names(cls: type) -> set[str]:
    try:
        instance = cls()
    except TypeError:  # needs arguments: its class's names are all there is to compare
        return set()
    return {n for n in dir(instance) if not n.startswith("_")}


def _class_differences(where: str, compiled: type, pure: type) -> list[str]:
    out: list[str] = []
    c_names = {n for n in dir(compiled) if not n.startswith("_")} | _instance_names(compiled)
    p_names = {n for n in dir(pure) if not n.startswith("_")} | _instance_names(pure)
    out += [f"{where}.{n}: only in the compiled twin" for n in sorted(c_names - p_names)]
    out += [f"{where}.{n}: only in the pure twin" for n in sorted(p_names - c_names)]
    for name in sorted(c_names & p_names):
        c_value = inspect.getattr_static(compiled, name, None)
        p_value = inspect.getattr_static(pure, name, None)
        if c_value is None or p_value is None:  # set on each instance (a slot filled in __init__)
            continue
        if _kind(c_value) != _kind(p_value):
            out.append(f"{where}.{name}: a {_kind(c_value)} compiled, a {_kind(p_value)} pure")
            continue
        c_sig, p_sig = _signature(c_value), _signature(p_value)
        if c_sig is not None and p_sig is not None and c_sig != p_sig:
            out.append(f"{where}.{name}: signature {c_sig} compiled, {p_sig} pure")
    return out


def surface_differences(compiled: ModuleType, pure: ModuleType) -> list[str]:
    """Every way the two modules' public surfaces differ, one line each ([] when they agree)."""
    where = pure.__name__.removesuffix("_py")
    c_all, p_all = set(compiled.__all__), set(pure.__all__)
    out = [f"{where}.{n}: exported by the compiled twin only" for n in sorted(c_all - p_all)]
    out += [f"{where}.{n}: exported by the pure twin only" for n in sorted(p_all - c_all)]
    for name in sorted(c_all & p_all):
        c_value, p_value = getattr(compiled, name), getattr(pure, name)
        if _kind(c_value) != _kind(p_value):
            out.append(f"{where}.{name}: a {_kind(c_value)} compiled, a {_kind(p_value)} pure")
        elif inspect.isclass(c_value):
            out += _class_differences(f"{where}.{name}", c_value, p_value)
        elif callable(c_value):
            c_sig, p_sig = _signature(c_value), _signature(p_value)
            if c_sig is not None and p_sig is not None and c_sig != p_sig:
                out.append(f"{where}.{name}: signature {c_sig} compiled, {p_sig} pure")
        elif c_value != p_value:
            out.append(f"{where}.{name}: {c_value!r} compiled, {p_value!r} pure")
    return out


@pytest.mark.parametrize("module", MODULES)
def test_the_public_surfaces_are_the_same(module: str) -> None:
    compiled = importlib.import_module(f"notipipe.{module}_c")
    pure = importlib.import_module(f"notipipe.{module}_py")
    assert surface_differences(compiled, pure) == []
    # ... and the comparison saw something: each module exports at least one class.
    assert any(inspect.isclass(getattr(pure, n)) for n in pure.__all__)


def test_the_twins_are_assembled_from_their_own_modules() -> None:
    from notipipe._twins import load

    for name in ("c", "py"):
        twin = load(name)
        messages = importlib.import_module(f"notipipe._messages_{name}")
        publisher = importlib.import_module(f"notipipe._publisher_{name}")
        assert (twin.messages_module, twin.publisher_module) == (messages, publisher)
        assert (twin.EmailMessage, twin.SMSMessage) == (messages.EmailMessage, messages.SMSMessage)
        assert twin.Publisher is publisher.Publisher
        assert issubclass(twin.DatabaseConnection, publisher.Publisher)
        assert twin.MessageFactory.create_message("sms", body="x").__class__ is messages.SMSMessage
        assert load(name) is twin
    assert load("c").DatabaseConnection is not load("py").DatabaseConnection
