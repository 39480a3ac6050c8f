"""``python -m notipipe.cli``: the same as the ``notipipe`` command."""

import sys

from notipipe.cli import main

sys.exit(main())
