"""Where things are, for tests in any folder depth: the checkout, ``csrc/``, the examples, the demo
scene and ``shared/data`` beside the checkout (or beside any folder above it: worktrees live deeper)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
CI = ROOT / ".ci"
EXAMPLES = ROOT / "examples"
DEMO_FERN = ROOT / "reconfusion" / "demo" / "fern"


def _shared_data() -> Path:
    for d in ROOT.parents:
        if (d / "shared" / "data").is_dir():
            return d / "shared" / "data"
    return ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data()
