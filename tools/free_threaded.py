"""Obtain a free-threaded CPython when none is found: an installer first, else a build from source.

Tried in order, each only where it can work:

1. ``uv python install 3.14t`` / ``3.13t`` when uv is on PATH (it downloads a prebuilt one);
2. on Debian, CPython 3.13 built with ``--disable-gil`` from the distribution's
   ``python3.13`` source package (the release tarball it carries), into a per-user cache:
   ``$NOTIPIPE_CACHE`` or ``$XDG_CACHE_HOME/notipipe`` or ``~/.cache/notipipe``. It is built once
   and then reused; a lock file keeps two runs from building it at the same time.

``python3 tools/free_threaded.py`` prints the interpreter's path (progress goes to stderr), so
it can serve as ``NOTIPIPE_FT_TOOL`` elsewhere. ``--tsan`` builds a ThreadSanitizer variant.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tools` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.console import Summary, heading, run_logged, say, warn
from tools.interpreters import FT_HOWTO, Interpreter, built_ft_prefix, ft_python, probe
from tools.locks import locked
from tools.system_deps import apt_install

# The standard-library modules the tests need, and so the headers the build must find.
BUILD_PACKAGES = (
    "build-essential",
    "libssl-dev",
    "libsqlite3-dev",
    "libffi-dev",
    "zlib1g-dev",
    "libbz2-dev",
    "liblzma-dev",
    "xz-utils",
    "dpkg-dev",
)
_USABLE = "import ssl, sqlite3, ctypes, sys; sys.exit(sys._is_gil_enabled())"
# The suite a source package is taken from, tried in order: python3.13 is in Debian 13 (trixie)
# and later, whatever release the machine runs.
SUITES = ("trixie", "forky", "sid")


def _log(text: str) -> None:
    print(f"free-threaded: {text}", file=sys.stderr, flush=True)


def _usable(path: Path) -> Interpreter | None:
    if not path.is_file():
        return None
    ok = subprocess.run([path, "-c", _USABLE], capture_output=True, check=False).returncode == 0
    it = probe(str(path)) if ok else None
    return it if it and it.free_threaded else None


def _via_uv(tried: list[str]) -> Interpreter | None:
    uv = shutil.which("uv")
    if uv is None:
        tried.append("uv: not on PATH")
        return None
    env = {**os.environ, "UV_HTTP_TIMEOUT": "30"}
    for version in ("3.14t", "3.13t"):
        _log(f"uv python install {version}")
        try:
            inst = subprocess.run(
                [uv, "python", "install", version],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=False,
            )
            found = subprocess.run(
                [uv, "python", "find", version],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            tried.append(f"uv python install {version}: timed out")
            continue
        it = _usable(Path(found.stdout.strip())) if found.returncode == 0 and found.stdout.strip() else None
        if it:
            return it
        tried.append(f"uv python install {version}: {(inst.stderr.strip().splitlines() or ['failed'])[-1]}")
    return None


def _archive() -> str | None:
    """The Debian archive this machine's apt uses (not its security mirror)."""
    for source in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for m in re.finditer(r"^URIs:\s*(\S+)", Path(source).read_text(), re.M):
            if "security" not in m.group(1):
                return m.group(1)
    lst = Path("/etc/apt/sources.list")
    if lst.is_file():
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", lst.read_text(), re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return None


def _step(label: str, cmd: Sequence[str | Path], log: Path, cwd: Path | None = None) -> bool:
    return run_logged(cmd, f"free-threaded: {label}", log, cwd=cwd)


def _source_tarball(work: Path, log: Path, tried: list[str]) -> Path | None:
    """The upstream CPython 3.13 tarball, from Debian's python3.13 source package."""
    archive = _archive()
    if archive is None:
        tried.append("Debian source package: no Debian archive in /etc/apt")
        return None
    # A private apt configuration, so the machine's own sources stay untouched.
    apt = work / "apt"
    (apt / "lists" / "partial").mkdir(parents=True)
    (apt / "parts").mkdir()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (apt / "parts" / "src.sources").write_text(
        "".join(
            f"Types: deb-src\nURIs: {archive}\nSuites: {suite}\nComponents: main\nSigned-By: {keyring}\n\n"
            for suite in SUITES
        )
    )
    opts = [
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
    ]  # fmt: skip
    if not _step("apt-get update (deb-src, private lists)", ["apt-get", *opts, "update"], log):
        tried.append(f"Debian source package: apt-get update of {archive} failed")
        return None
    for suite in SUITES:
        if _step(
            f"downloading python3.13/{suite} source",
            ["apt-get", *opts, "source", "--download-only", f"python3.13/{suite}"],
            log,
            cwd=work,
        ):
            break
    tarballs = sorted(t for t in work.glob("python3.13_*.orig.tar.*") if t.suffix != ".asc")
    if not tarballs:
        tried.append("Debian source package: python3.13 not found in " + ", ".join(SUITES))
        return None
    return tarballs[-1]


def build_from_debian_source(tried: list[str], *, tsan: bool = False) -> Interpreter | None:
    """CPython 3.13t built from Debian's python3.13 source package into the per-user cache."""
    if shutil.which("apt-get") is None:
        tried.append("build from source: no apt-get (not Debian)")
        return None
    prefix = built_ft_prefix(tsan)
    exe = prefix / "bin" / "python3.13t"
    with locked(prefix.parent / f"{prefix.name}.lock", "build of CPython"):
        it = _usable(exe)
        if it:  # built by another run while we waited
            return it
        missing = [
            p
            for p in BUILD_PACKAGES
            if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode != 0
        ]
        if missing and not apt_install(missing):
            tried.append(f"build from source: needs {' '.join(missing)} (apt-get install, as root)")
            return None
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="notipipe-cpython.") as tmp:
            work = Path(tmp)
            log = prefix.parent / f"{prefix.name}-build.log"
            log.write_text("")
            _log(f"building CPython 3.13t{' with ThreadSanitizer' if tsan else ''} into {prefix}"
                 f" (once; several minutes; log: {log})")  # fmt: skip
            tarball = _source_tarball(work, log, tried)
            if tarball is None:
                return None
            if not _step("unpacking the source", ["tar", "-C", work, "-xf", tarball], log):
                tried.append(f"build from source: could not unpack {tarball.name}")
                return None
            src = next((d for d in work.glob("Python-3.13.*") if d.is_dir()), None)
            if src is None:
                tried.append(f"build from source: {tarball.name} holds no Python-3.13.* directory")
                return None
            staging = prefix.with_name(prefix.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            configure = [
                "./configure", "--disable-gil", f"--prefix={prefix}", "--with-ensurepip=install",
                *(["--with-thread-sanitizer"] if tsan else []),
            ]  # fmt: skip
            jobs = str(os.cpu_count() or 2)
            # Installed into a staging directory first (DESTDIR), then moved into place: a build
            # stopped half-way leaves no half-installed interpreter behind for the next run.
            ok = (
                _step("configuring CPython 3.13t", configure, log, cwd=src)
                and _step(f"compiling CPython 3.13t (make -j{jobs})", ["make", f"-j{jobs}"], log, cwd=src)
                and _step("installing it", ["make", "install", f"DESTDIR={staging}"], log, cwd=src)
            )
            if not ok:
                tried.append(f"build from source: failed (log: {log})")
                return None
            built = staging / prefix.relative_to(prefix.anchor)
            share = built / "share" / "tsan"
            share.mkdir(parents=True, exist_ok=True)
            for supp in (src / "Tools" / "tsan").glob("*.txt"):
                shutil.copy2(supp, share)
            shutil.rmtree(prefix, ignore_errors=True)
            built.rename(prefix)
            shutil.rmtree(staging, ignore_errors=True)
        it = _usable(exe)
        if it is None:
            # Not left in the cache, where the next run would find it and take it.
            shutil.rmtree(prefix, ignore_errors=True)
            tried.append(
                f"build from source: {exe} was built but does not run free-threaded with ssl/sqlite3"
            )
        else:
            _log(f"ready: {exe}")
        return it


def cached() -> Interpreter | None:
    """The interpreter an earlier run built, if it is there and works."""
    return _usable(built_ft_prefix() / "bin" / "python3.13t")


def obtain(tried: list[str]) -> Interpreter | None:
    """A free-threaded CPython from an installer or a build; ``tried`` collects what failed."""
    return cached() or _via_uv(tried) or build_from_debian_source(tried)


def find_or_obtain(summary: Summary) -> Interpreter | None:
    """The free-threaded interpreter of a task: found (``ft_python``), else obtained; a FAIL line
    in ``summary`` saying what was tried when neither works."""
    heading("a free-threaded interpreter")
    it = ft_python()
    if it is None:
        say("none found: obtaining one (an installer, else a build from source, cached for next time)")
        tried: list[str] = []
        it = obtain(tried)
        if it is None:
            summary.add(
                False, "free-threaded: none found, and none could be obtained (what was tried: below)"
            )
            warn("tried:\n  " + "\n  ".join(tried) + "\n" + FT_HOWTO)
            return None
    say(f"free-threaded: {it.path}")
    return it


def main(argv: Sequence[str]) -> int:
    tsan = "--tsan" in argv
    tried: list[str] = []
    # Progress (ours and apt's) goes to stderr: stdout carries the interpreter's path alone.
    with contextlib.redirect_stdout(sys.stderr):
        if tsan:
            it = _usable(built_ft_prefix(tsan=True) / "bin" / "python3.13t") or build_from_debian_source(
                tried, tsan=True
            )
        else:
            it = obtain(tried)
    if it is None:
        _log("could not obtain one:\n  " + "\n  ".join(tried))
        return 1
    print(it.path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
