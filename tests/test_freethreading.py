"""On a free-threaded interpreter, importing notipipe (compiled) must leave the GIL off."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig

import pytest

import notipipe

pytestmark = pytest.mark.twin

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
EXPECT_COMPILED = os.environ.get("NOTIPIPE_EXPECT_COMPILED", "") not in ("", "0")


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded (3.13t+) interpreter")
def test_import_leaves_the_gil_disabled() -> None:
    if importlib.util.find_spec("notipipe._publisher_c") is None and not EXPECT_COMPILED:
        pytest.skip("the compiled twin is not built in this environment")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "NOTIPIPE_NO_EXTENSIONS")}
    code = (
        "import sys, notipipe\n"
        # each compiled module, explicitly
        "from notipipe import _batch_c, _chunk_c, _copy_c, _kinds_c, _messages_c, _publisher_c\n"
        "print(notipipe.COMPILED, sys._is_gil_enabled())\n"
        # A registered kind is called, and its row made, through _kinds_c: still no GIL after.
        "from dataclasses import dataclass\n"
        "@notipipe.MessageFactory.register('push')\n"
        "@dataclass(frozen=True, slots=True)\n"
        "class Push(notipipe.BaseMessage):\n"
        "    device: str\n"
        "Push('pixel')._row()\n"
        "print(sys._is_gil_enabled())\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def test_compiled_flag_matches_the_switch() -> None:
    forced = os.environ.get("NOTIPIPE_NO_EXTENSIONS", "") not in ("", "0")
    if forced:
        assert notipipe.COMPILED is False
    elif EXPECT_COMPILED:
        assert notipipe.COMPILED is True
    assert (notipipe.EmailMessage.__module__ == "notipipe._messages_c") == notipipe.COMPILED
    assert (notipipe.Publisher.__module__ == "notipipe._publisher_c") == notipipe.COMPILED
