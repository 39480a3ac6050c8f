"""Run by an installed wheel's interpreter, outside the source tree: is notipipe what it should be?

It must come from the venv's site-packages, compiled, with its stubs and py.typed beside it.
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig

import notipipe
from notipipe import _messages_c, _publisher_c


def main() -> int:
    pkg = pathlib.Path(notipipe.__file__).parent
    site = pathlib.Path(sysconfig.get_paths()["platlib"])
    problems = []
    if pkg.parent != site:
        problems.append(f"notipipe imported from {pkg}, not from {site}")
    if not notipipe.COMPILED:
        problems.append("the wheel's notipipe runs pure")
    for module in (_messages_c, _publisher_c):
        stub = pathlib.Path(str(module.__file__)).parent / f"{module.__name__.rsplit('.', 1)[1]}.pyi"
        if not stub.is_file():
            problems.append(f"{stub.name} missing next to the modules")
    if not (pkg / "py.typed").is_file():
        problems.append("py.typed missing")
    gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    if sysconfig.get_config_var("Py_GIL_DISABLED") and gil:
        problems.append("importing notipipe turned the GIL on (an extension not free-threading compatible)")
    print(f"notipipe from {pkg}: COMPILED={notipipe.COMPILED}, GIL enabled={gil}")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
