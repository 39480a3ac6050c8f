"""mkdocs hook of the API reference: every name of ``notipipe.__all__`` must be documented.

mkdocs --strict fails on a warning; this one is logged after the build for each public name with
no anchor (``id="notipipe.NAME"``, what ``::: notipipe.NAME`` makes) in any page, so a name
added to ``__all__`` and not to ``docs/reference/`` fails the build. ``__all__`` is read from the
source, like everything else in the reference: the build imports nothing of notipipe.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig

INIT = Path(__file__).resolve().parent.parent / "src" / "notipipe" / "__init__.py"
# Under "mkdocs.": the loggers whose warnings --strict counts.
log = logging.getLogger("mkdocs.hooks.notipipe_reference")


def public_names(init: Path = INIT) -> list[str]:
    """``__all__`` of ``init``, read without importing it."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            names: list[str] = ast.literal_eval(node.value)
            return names
    raise LookupError(f"{init} has no __all__")


def undocumented(site: Path, names: list[str]) -> list[str]:
    """The names of ``names`` that no page of the built ``site`` has an anchor for."""
    pages = "\n".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    return [name for name in names if f'id="notipipe.{name}"' not in pages]


def on_post_build(config: MkDocsConfig) -> None:
    for name in undocumented(Path(config.site_dir), public_names()):
        log.warning("notipipe.%s is in notipipe.__all__ but not in the API reference", name)
