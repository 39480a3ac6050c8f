"""The public API is ``notipipe`` itself: what the documentation names, users import from there.

The modules behind it are private (``notipipe._errors``, ``notipipe._database``, ...) and move as
the code is reorganised; a name the README or a traceback shows that is importable only from one
of them is a name users will import from the wrong place.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pickle
import pkgutil
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import TypeAliasType

import pytest

import notipipe

pytestmark = pytest.mark.twin

README = Path(__file__).resolve().parents[1] / "README.md"

# The command-line demo is an application built on the library, not part of its API.
_DEMO = (
    "notipipe.cli",
    "notipipe.dashboard",
    "notipipe.__main__",
    "notipipe._dashboards",
    "notipipe._run_display",
)


def _library_modules() -> list[ModuleType]:
    """Every module of the library (the demo aside) that imports here; the PostgreSQL modules
    need the optional psycopg, and are left out where it is not installed."""
    modules = [notipipe]
    for info in pkgutil.walk_packages(notipipe.__path__, "notipipe."):
        if info.name.startswith(_DEMO):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as error:
            if error.name != "psycopg":
                raise
    return modules


def _defined_here(module: ModuleType) -> dict[str, object]:
    """The public names ``module`` defines itself (not those it imports)."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type | TypeAliasType)
        and value.__module__ == module.__name__
    }


def _readme_names(text: str) -> set[str]:
    """Names the README imports from ``notipipe`` or reads as ``notipipe.X``."""
    names: set[str] = set()
    for imported in re.findall(r"^\s*from notipipe import ([^\n(]+|\([^)]*\))", text, re.MULTILINE):
        names.update(n.split(" as ")[0].strip() for n in imported.strip("()").split(",") if n.strip())
    # notipipe.X, but not a file such as ./notipipe.db
    names.update(re.findall(r"(?<![\w/.])notipipe\.([A-Za-z_]\w*)", text))
    return names


def _readme_mentions(text: str) -> set[str]:
    """Every identifier the README quotes as code (``Name``, or the first word of a snippet)."""
    return set(re.findall(r"`([A-Za-z_]\w*)", text))


def test_the_readme_parser_finds_imports_and_attributes() -> None:
    text = (
        "from notipipe import DatabaseConnection, MessageFactory as MF\n"
        "  from notipipe import (\n    Observer,\n    StoreStats,\n)\n"
        "`notipipe.COMPILED` tells; notipipe.__version__ too; notipipe_x and ./notipipe.db are not\n"
    )
    assert _readme_names(text) == {
        "DatabaseConnection",
        "MessageFactory",
        "Observer",
        "StoreStats",
        "COMPILED",
        "__version__",
    }


def test_every_name_the_readme_imports_is_exported() -> None:
    if not README.exists():
        pytest.skip("README.md is not shipped with the installed tests")
    names = _readme_names(README.read_text(encoding="utf-8"))
    assert {"DatabaseConnection", "MessageFactory"} <= names  # the parser still works
    assert sorted(n for n in names if not _exported(n)) == []


def _exported(name: str) -> bool:
    """A name of ``notipipe.__all__``, or a public module of the package (``notipipe.metrics``)."""
    if name in notipipe.__all__ and hasattr(notipipe, name):
        return True
    return not name.startswith("_") and importlib.util.find_spec(f"notipipe.{name}") is not None


def test_every_library_class_the_readme_names_is_exported() -> None:
    """A class, exception or type the README quotes (`StorageError`, `StoreStats`) that the
    library defines must be importable from ``notipipe``, as the same object."""
    if not README.exists():
        pytest.skip("README.md is not shipped with the installed tests")
    mentioned = _readme_mentions(README.read_text(encoding="utf-8"))
    defined: dict[str, list[object]] = {}
    for module in _library_modules():
        for name, value in _defined_here(module).items():
            defined.setdefault(name, []).append(value)
    named = sorted(mentioned & defined.keys())
    assert {"DatabaseConnection", "Observer"} <= set(named)  # the scan still finds something
    missing = [n for n in named if n not in notipipe.__all__]
    assert missing == []
    for name in named:
        assert any(getattr(notipipe, name) is value for value in defined[name]), name


def test_every_exception_the_library_defines_is_exported() -> None:
    """What the library raises to users, users can catch by importing it from ``notipipe``."""
    errors = {
        value
        for module in _library_modules()
        for value in _defined_here(module).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert errors, "no exception class found"
    missing = sorted(e.__qualname__ for e in errors if getattr(notipipe, e.__name__, None) is not e)
    assert missing == []
    assert not {e.__name__ for e in errors} - set(notipipe.__all__)


def test_all_lists_exactly_the_public_names() -> None:
    assert len(notipipe.__all__) == len(set(notipipe.__all__))
    public = {
        name
        for name, value in vars(notipipe).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public | {"__version__"} == set(notipipe.__all__)
    for name in notipipe.__all__:
        assert hasattr(notipipe, name), name


def test_exported_names_say_where_they_live() -> None:
    """Each exported class, function and type alias names a module that really holds it (so
    pickle, ``inspect`` and documentation tools find it), and that module is ``notipipe``
    itself for the exceptions, which tracebacks show to users: ``notipipe.StorageError: ...``,
    not a private module."""
    for name in notipipe.__all__:
        value = getattr(notipipe, name)
        if not isinstance(value, type | TypeAliasType) and not callable(value):
            continue
        home = sys.modules[value.__module__]
        assert getattr(home, value.__qualname__ if isinstance(value, type) else name) is value, name
        if isinstance(value, type) and issubclass(value, BaseException):
            assert value.__module__ == "notipipe", f"{name} is shown as {value.__module__}.{name}"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("NotipipeError", ("broken",)),
        ("StorageError", ("/tmp/alerts.db", "database or disk is full")),
        ("StorageClosedError", ("/tmp/alerts.db",)),
        ("ConfigurationError", ("asked for another path",)),
        ("ReentrancyError", ("flush() from the writer thread",)),
        ("AsyncObserverError", ("the observer raised SystemExit",)),
        ("LoopClosedError", ("the loop is closed",)),
    ],
)
def test_exported_exceptions_survive_pickling(name: str, args: tuple[str, ...]) -> None:
    """An error raised in a worker process (multiprocessing, concurrent.futures) reaches the
    parent pickled: it must come back as the same class with the same message and fields."""
    error: Exception = getattr(notipipe, name)(*args)
    error.add_note("raised in a worker")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
    assert copy.__notes__ == ["raised in a worker"]


def test_the_version_is_written_once() -> None:
    """``notipipe.__version__`` is the one place: the installed metadata is read from it, and
    pyproject.toml declares the version dynamic instead of repeating it."""
    assert importlib.metadata.version("notipipe") == notipipe.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|(a|b|rc)\d+)?", notipipe.__version__)
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
