"""The API reference (``mkdocs.yml``, ``docs/reference/``) builds with ``--strict`` and documents
every name of ``notipipe.__all__``; and the check can fail: a broken cross-reference, a public
name left out of the pages, and a docstring griffe cannot read each fail the build, with their
warning as the only one. Each build runs mkdocs as the docs and lint tasks do
(``tools/docs.py``), into a temporary directory."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import notipipe

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mkdocs.yml"
PAGES = ROOT / "docs" / "reference"
_WARNING = re.compile(r"^(?:WARNING|ERROR)\s+-\s+(.*)$", re.M)


@pytest.fixture(autouse=True)
def _docs_tools() -> None:
    if not CONFIG.exists():
        pytest.skip("the API reference's sources are not shipped with the installed tests")
    pytest.importorskip("mkdocstrings", reason="the docs group is installed in the leg with the linters")


def _build(site: Path, config: Path = CONFIG) -> subprocess.CompletedProcess[str]:
    from tools.docs import build

    return build(Path(sys.executable), site, config)


def _warnings(done: subprocess.CompletedProcess[str]) -> list[str]:
    return _WARNING.findall(done.stdout + done.stderr)


def _variant(tmp_path: Path, *, src: Path | None = None, nav: dict[str, str] | None = None) -> Path:
    """A config of the reference over a copy of its pages (``tmp_path / "pages"``, which the
    test then breaks), every path in it absolute; ``nav`` adds pages."""
    from mkdocs.utils.yaml import yaml_load

    config = yaml_load(CONFIG.read_text(encoding="utf-8"))
    pages = tmp_path / "pages"
    shutil.copytree(PAGES, pages)
    config["docs_dir"] = str(pages)
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    python = config["plugins"][1]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(src or ROOT / "src")]
    python["options"]["extensions"] = [str(ROOT / e) for e in python["options"]["extensions"]]
    config["nav"] += [{title: page} for title, page in (nav or {}).items()]
    path = tmp_path / "mkdocs.yml"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return path


def test_the_reference_builds_strict_with_every_public_name(tmp_path: Path) -> None:
    done = _build(tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _warnings(done) == []
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "site").glob("*.html"))
    missing = [name for name in notipipe.__all__ if f'id="notipipe.{name}"' not in pages]
    assert missing == []
    # The typed declaration's signature, not the untyped runtime definition's (tools/griffe_typed.py).
    text = html.unescape(re.sub(r"<[^>]+>", "", (tmp_path / "site" / "publisher.html").read_text()))
    assert "observer: Observer[Never] | AsyncObserver[Never]" in text
    assert "durable_name: str | None = None" in text


def test_the_copy_of_the_reference_builds(tmp_path: Path) -> None:
    # The variants below differ from this one by their breakage alone.
    done = _build(tmp_path / "site", _variant(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_broken_cross_reference_fails_the_build(tmp_path: Path) -> None:
    config = _variant(tmp_path, nav={"Broken": "broken.md"})
    (tmp_path / "pages" / "broken.md").write_text("# Broken\n\nSee [nothing][notipipe.NoSuchName].\n")
    done = _build(tmp_path / "site", config)
    assert done.returncode != 0
    assert _warnings(done) == [
        "mkdocs_autorefs: broken.md: Could not find cross-reference target 'notipipe.NoSuchName'"
    ]


def test_a_public_name_left_out_fails_the_build(tmp_path: Path) -> None:
    config = _variant(tmp_path)
    errors = tmp_path / "pages" / "errors.md"
    errors.write_text(errors.read_text().replace("::: notipipe.LoopClosedError\n", ""))
    done = _build(tmp_path / "site", config)
    assert done.returncode != 0
    assert _warnings(done) == ["notipipe.LoopClosedError is in notipipe.__all__ but not in the API reference"]


def test_a_docstring_griffe_cannot_read_fails_the_build(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "notipipe", src / "notipipe")
    (src / "notipipe" / "_probe.py").write_text(
        'def probe(a: int) -> int:\n    """Probe.\n\n    Args:\n        b: no such parameter.\n    """\n'
        "    return a\n"
    )
    config = _variant(tmp_path, src=src, nav={"Probe": "probe.md"})
    (tmp_path / "pages" / "probe.md").write_text("# Probe\n\n::: notipipe._probe.probe\n")
    done = _build(tmp_path / "site", config)
    assert done.returncode != 0
    probe = f"griffe: {src / 'notipipe' / '_probe.py'}:5:"
    assert _warnings(done) == [
        f"{probe} No type or annotation for parameter 'b'",
        f"{probe} Parameter 'b' does not appear in the function signature",
    ]
