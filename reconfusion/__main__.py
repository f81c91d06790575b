"""``python -m reconfusion demo`` (and every other subcommand of the ``reconfusion`` CLI)."""
import sys

from .cli import main

sys.exit(main())
