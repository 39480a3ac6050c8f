"""Build notipipe: the Cython twins when allowed, and the typed stubs inside the package.

``NOTIPIPE_NO_EXTENSIONS=1`` (or a Python other than CPython) builds a pure-Python package;
otherwise every ``src/notipipe/*.pyx`` is compiled, and a failure to compile is an error, not a
silent fallback.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
NO_EXTENSIONS = os.environ.get("NOTIPIPE_NO_EXTENSIONS", "") not in ("", "0") or (
    platform.python_implementation() != "CPython"
)


class build_py_with_stubs(build_py):  # noqa: N801 - setuptools command naming
    """Copy ``stubs/notipipe/*.pyi`` next to the modules they describe."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "notipipe"
        target.mkdir(parents=True, exist_ok=True)
        for stub in sorted((HERE / "stubs" / "notipipe").glob("*.pyi")):
            shutil.copyfile(stub, target / stub.name)


def extensions() -> list[object]:
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    sources = sorted(str(p.relative_to(HERE)) for p in (HERE / "src" / "notipipe").glob("*.pyx"))
    return cythonize(  # type: ignore[no-any-return]
        sources,
        compiler_directives={"language_level": 3, "freethreading_compatible": True},
        annotate=os.environ.get("NOTIPIPE_ANNOTATE", "") not in ("", "0"),
    )


setup(ext_modules=extensions(), cmdclass={"build_py": build_py_with_stubs})
