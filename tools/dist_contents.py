"""What check-wheel-contents and twine check do not cover: the sdist is complete and clean, each
wheel has a compiled module and a stub per ``.pyx``, ``py.typed`` and no sources, and METADATA
has what PyPI shows (classifiers, license, URLs) and the console script.
"""

from __future__ import annotations

import fnmatch
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

STRAY_SUFFIXES = (
    ".c",
    ".so",
    ".pyd",
    ".pyc",
    ".pyo",
    ".html",
    ".db",
    ".db-wal",
    ".db-shm",
    ".whl",
    ".tar.gz",
)
STRAY_DIRS = {
    "build", "dist", "__pycache__", ".git", ".hypothesis", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".tox", ".nox",
}  # fmt: skip
BUILD_FILES = {
    "pyproject.toml",
    "setup.py",
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "MANIFEST.in",
    "PKG-INFO",
}
CLASSIFIERS = (
    "Programming Language :: Python :: Free Threading",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Programming Language :: Python :: 3.14",
    "Typing :: Typed",
)
CONSOLE_SCRIPT = "notipipe = notipipe.cli:main"


def shipped_assets(src: Path) -> set[str]:
    """Files the package ships that are neither Python nor stubs (the dashboard's page and script),
    as pyproject's package-data names them: ``.html`` there is an asset, not a Cython report."""
    setuptools = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]
    assets: set[str] = set()
    for package, patterns in setuptools.get("package-data", {}).items():
        folder = src / "src" / package.replace(".", "/")
        for pattern in patterns:
            for path in folder.glob(pattern):
                if path.is_file() and path.suffix not in (".py", ".pyi", ".typed"):
                    assets.add(str(path.relative_to(src / "src")))
    return assets


def check_sdist(src: Path, sdist: Path, assets: set[str]) -> list[str]:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    rel = {n[len(top) + 1 :] for n in names if n.startswith(top + "/")}
    need = set(BUILD_FILES)
    for sub in ("src", "stubs", "tests"):
        need |= {
            str(p.relative_to(src))
            for p in (src / sub).rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and not p.name.endswith((".c", ".so", ".pyd", ".html"))
            and ".egg-info" not in str(p)
        }
    need |= {f"src/{a}" for a in assets}
    problems = [f"sdist lacks {n}" for n in sorted(need - rel)]
    for n in sorted(rel):
        dirs = n.split("/")[:-1]
        stray_file = n.endswith(STRAY_SUFFIXES) and n.removeprefix("src/") not in assets
        if stray_file or any(d in STRAY_DIRS or d.startswith(".venv") for d in dirs):
            problems.append(f"sdist has stray {n}")
    print(f"sdist {sdist.name}: {len(rel)} entries")
    return problems


def check_wheel(src: Path, wheel: Path, assets: set[str]) -> list[str]:
    name = wheel.name
    with zipfile.ZipFile(wheel) as z:
        files = z.namelist()
        info = next(f for f in files if f.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        eps = z.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in files else ""
    problems = []
    for mod in sorted(p.stem for p in (src / "src" / "notipipe").glob("*.pyx")):
        if not any(
            fnmatch.fnmatch(f, f"notipipe/{mod}.*.so") or fnmatch.fnmatch(f, f"notipipe/{mod}.*.pyd")
            for f in files
        ):
            problems.append(f"{name}: no compiled notipipe/{mod}")
        if f"notipipe/{mod}.pyi" not in files:
            problems.append(f"{name}: no stub notipipe/{mod}.pyi")
    if "notipipe/py.typed" not in files:
        problems.append(f"{name}: no notipipe/py.typed")
    built = (".pyx", ".c", ".html", ".pyc")
    problems += [f"{name}: stray {f}" for f in files if f.endswith(built) and f not in assets]
    problems += [f"{name}: no {a}" for a in sorted(assets) if a not in files]
    if meta.get("Requires-Python") != ">=3.12":
        problems.append(f"{name}: Requires-Python is {meta.get('Requires-Python')!r}, not '>=3.12'")
    classifiers = meta.get_all("Classifier") or []
    problems += [
        f"{name}: no classifier {w!r}" for w in CLASSIFIERS if not any(c.startswith(w) for c in classifiers)
    ]
    if not (meta.get("License-Expression") or meta.get("License")):
        problems.append(f"{name}: no license in METADATA")
    if not any(f.startswith(f"{info}/licenses/") for f in files):
        problems.append(f"{name}: no license file in .dist-info/licenses/")
    if not meta.get_all("Project-URL"):
        problems.append(f"{name}: no Project-URL")
    if CONSOLE_SCRIPT not in eps:
        problems.append(f"{name}: entry_points.txt lacks the notipipe console script")
    print(
        f"{name}: {len(files)} files; Requires-Python {meta.get('Requires-Python')};"
        f" License-Expression {meta.get('License-Expression')}; {len(classifiers)} classifiers;"
        f" {len(meta.get_all('Project-URL') or [])} project URLs"
    )
    return problems


def check(src: Path, sdist: Path, wheels: list[Path]) -> list[str]:
    """Every problem found, one line each (none: all good)."""
    assets = shipped_assets(src)
    problems = check_sdist(src, sdist, assets)
    for wheel in wheels:
        problems += check_wheel(src, wheel, assets)
    for problem in problems:
        print("PROBLEM:", problem)
    return problems
