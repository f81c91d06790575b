"""A kill at any file operation of a writer, simulated in-process (the checkpoint kill tests)."""

from __future__ import annotations

import os


class Killed(BaseException):
    """Stands for SIGKILL: not an ``Exception``, so no handler of the code under test catches it."""


class OperationKiller:
    """Counts the file operations of the functions it wraps; raises :class:`Killed` at operation ``at``
    (1-based; ``None`` never kills): before the operation runs, or for a ``half_write`` operation
    after it ran, leaving its file (the first argument) half written."""

    def __init__(self, at: int | None):
        self.at, self.count = at, 0

    def wrap(self, fn, half_write: bool = False, before=None):
        """``fn`` counted; ``before(*args)`` (optional) runs ahead of the count, to observe calls."""

        def op(*args, **kw):
            if before is not None:
                before(*args)
            self.count += 1
            if self.count != self.at:
                return fn(*args, **kw)
            if half_write:
                fn(*args, **kw)
                with open(args[0], "r+b") as f:
                    f.truncate(os.path.getsize(args[0]) // 2)
            raise Killed

        return op
