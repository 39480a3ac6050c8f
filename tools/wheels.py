"""The wheels task and the artifact checks: the sdist and wheels as users get them.

``tools/build.py`` builds them once (the sdist from a snapshot of the checkout, a repaired wheel
per interpreter from the sdist alone). This module checks what was built: each wheel installs
into a fresh venv and imports compiled from site-packages, with its stubs and ``py.typed`` (the
free-threaded one leaving the GIL off: ``tools/wheel_probe.py``); typing as a user of the
installed wheel sees it (mypy --strict on user code, reveal_type, stubtest); the contents and
metadata (check-wheel-contents, twine check --strict, ``tools/dist_contents.py``), ``auditwheel
show``, and that cibuildwheel reads its configuration for each platform. The test task runs the
suite on the same wheels (``tools/testing.py``) and these checks but the typing one, which its
typing tests cover. Nothing is written into the checkout but under ``.venv/`` (the tools venv, a
copy of the sdist and wheels in ``.venv/dist``), and into ``--out`` when given.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools import dist_contents
from tools.build import Built, build_all, install_wheel, tool
from tools.console import Summary, heading, last_line, say
from tools.free_threaded import find_or_obtain
from tools.interpreters import NO_GIL_HOWTO, Interpreter, gil_pythons
from tools.lint import stubtest_command
from tools.venvs import VENVS, bin_path, make_venv, python_in

PROBE = Path(__file__).with_name("wheel_probe.py")
REVEAL = 'import notipipe\n\nreveal_type(notipipe.MessageFactory.create_message("email"))\n'


def probe(summary: Summary, venv: Path, tag: str) -> bool:
    """The installed wheel imports compiled from site-packages, stubs beside it; the script runs."""
    ok = subprocess.run([python_in(venv), PROBE], cwd=venv, check=False).returncode == 0
    script = subprocess.run(
        [bin_path(venv, "notipipe"), "--help"], cwd=venv, capture_output=True, check=False
    )
    return summary.add(
        ok and script.returncode == 0,
        f"{tag} wheel: compiled, from site-packages, stubs and py.typed present, console script runs",
    )


def typing(summary: Summary, venv: Path, src: Path, root: Path) -> None:
    """Typing as a user of the installed wheel sees it, outside the source tree."""
    heading("mypy --strict on user code, reveal_type, stubtest against the installed wheel")
    typing_dir = root / "typing"
    typing_dir.mkdir()
    shutil.copy2(src / "tests" / "typing" / "user_code.py", typing_dir)
    (typing_dir / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    (typing_dir / "reveal_user.py").write_text(REVEAL)
    mypy: list[str | Path] = [
        python_in(venv),
        "-m",
        "mypy",
        "--config-file",
        "mypy.ini",
        "--cache-dir",
        root / ".mypy-cache",
    ]

    def run(cmd: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=typing_dir, capture_output=True, text=True, check=False
        )
        say(proc.stdout + proc.stderr)
        return proc

    user = run([*mypy, "user_code.py"])
    summary.add(user.returncode == 0, f"mypy --strict user_code.py: {last_line(user.stdout)}")
    revealed = run([*mypy, "reveal_user.py"]).stdout.partition('Revealed type is "')[2].partition('"')[0]
    summary.add(
        bool(revealed) and "Any" not in revealed,
        f'reveal_type(notipipe.MessageFactory.create_message("email")) is {revealed or "nothing"}'
        " (must be a concrete class)",
    )
    allowlist = src / "stubs" / "stubtest-allowlist.txt"
    stubtest = (
        allowlist.is_file()
        and run(stubtest_command(python_in(venv), allowlist, Path("mypy.ini"))).returncode == 0
    )
    summary.add(stubtest, "stubtest of the compiled modules against the installed wheel")


def check_artifacts(summary: Summary, built: Built) -> None:
    """The sdist and wheels as a release would upload them: contents, metadata, auditwheel, and
    cibuildwheel's reading of pyproject.toml."""
    sdist, src = built.sdist, built.src
    wheels = sorted(built.wheels.values())
    heading("contents and metadata of the sdist and the wheels")
    problems = dist_contents.check(src, sdist, wheels)
    summary.add(
        not problems, "contents: sdist complete and clean; wheels compiled, stubs, py.typed, METADATA"
    )
    tools: list[tuple[str, list[str | Path]]] = [
        (f"check-wheel-contents ({len(wheels)} wheels)", [tool("check-wheel-contents"), *wheels]),
        (
            f"twine check --strict (sdist and {len(wheels)} wheels)",
            [tool("twine"), "check", "--strict", sdist, *wheels],
        ),
    ]
    for label, cmd in tools:
        heading(label)
        summary.add(subprocess.run(cmd, check=False).returncode == 0, label)
    for wheel in (w for w in wheels if "linux" in w.name):
        heading(f"auditwheel show {wheel.name}")
        ok = subprocess.run([tool("auditwheel"), "show", wheel], check=False).returncode == 0
        summary.add(ok, f"auditwheel show {wheel.name}")
    heading("cibuildwheel reads pyproject.toml's configuration")
    for platform in ("linux", "macos", "windows"):
        cmd = [
            tool("cibuildwheel"),
            "--print-build-identifiers",
            "--platform",
            platform,
            src,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        ids = proc.stdout.split()
        say(f"{platform}: {' '.join(ids)}" if proc.returncode == 0 else proc.stderr[-2000:])
        summary.add(
            proc.returncode == 0 and bool(ids), f"cibuildwheel --platform {platform}: {len(ids)} builds"
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s wheels --", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also copy the sdist and the wheels into OUT (e.g. dist)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (venvs, logs)")
    args = parser.parse_args(argv)
    gil = gil_pythons()
    if not gil:
        raise SystemExit(NO_GIL_HOWTO)
    say(f"GIL: {' '.join(it.path for it in gil)}")
    summary = Summary()
    ft = find_or_obtain(summary)
    root = Path(tempfile.mkdtemp(prefix="notipipe-wheels."))
    try:
        interpreters = [*gil, *([ft] if ft else [])]
        built = build_all(interpreters, root, VENVS / "dist")
        if summary.add(built is not None, "built once: the sdist, and from it a wheel per interpreter"):
            assert built is not None
            _check(summary, built, root, interpreters)
    finally:
        if args.keep:
            say(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if built is not None and args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for f in [built.sdist, *built.wheels.values()]:
            shutil.copy2(f, args.out)
        say(f"copied the sdist and the wheels to {args.out}")
    summary.show()
    if summary.failed:
        say("wheels: FAILED")
        return 1
    say("all wheel checks passed")
    return 0


def _check(summary: Summary, built: Built, root: Path, interpreters: Sequence[Interpreter]) -> None:
    for i, it in enumerate(interpreters):
        tag, wheel = it.tag, built.wheels[it.tag]
        venv = root / f"venv-{tag}"
        heading(f"{tag}: fresh venv with {wheel.name}")
        make_venv(it, venv, fresh=True)
        # The first one also gets the linters, for the typing check from the installed wheel.
        if install_wheel(venv, wheel, ["lint"] if i == 0 else []) and probe(summary, venv, tag) and i == 0:
            typing(summary, venv, built.src, root)
    check_artifacts(summary, built)
    for f in [built.sdist, *built.wheels.values()]:
        say(f"{f.name:<64} {f.stat().st_size:>9} bytes")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
