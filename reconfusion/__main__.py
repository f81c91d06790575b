"""``python -m reconfusion demo`` (and every other subcommand of the ``reconfusion`` CLI)."""

import sys

from .app.cli import main

sys.exit(main())
