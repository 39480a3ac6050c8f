"""The run task: notipipe from this checkout in ``.venv/<version>``, then ``notipipe run``.

``--ft`` runs it on the free-threaded interpreter; any other argument goes to ``notipipe run``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from tools.interpreters import FT_HOWTO, first_gil_python, ft_python
from tools.venvs import VENVS, bin_path, python_in, setup_venv


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if args[:1] == ["--ft"]:
        args.pop(0)
        it = ft_python()
        if it is None:
            print(FT_HOWTO, file=sys.stderr)
            return 1
    else:
        it = first_gil_python()
    venv = VENVS / it.tag
    ready = (
        python_in(venv).exists()
        and subprocess.run(
            [python_in(venv), "-c", "import notipipe, rich"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not ready and not setup_venv(it, venv, extras=["cli"]):
        return 1
    cmd = [str(bin_path(venv, "notipipe")), "run", *args]
    if os.name == "nt":
        return subprocess.run(cmd, check=False).returncode
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
