"""The training loop's side of the data stream: workers that are always reaped, a policy for bad
examples, and a worker's failure reported with its own message.

- :func:`batch_stream` opens the ``DataLoader`` and, however the loop ends (done, SIGTERM, an
  error), shuts its workers down and reaps them. Workers ignore SIGTERM (:mod:`.dataset`), so
  without this an error left them waiting and the interpreter's exit blocked on them forever.
- Bad examples (files a worker could not read) are left out of their batch by the stream; the run
  logs each one with its file and reason, and stops with :class:`DataError` once more than
  ``max_bad_examples`` were left out (default 0: the first one stops the run). A batch left with
  no example is skipped (it still counts as consumed, so resume positions stay right).
- Any other exception in a worker is re-raised with the worker's last line (type and message)
  instead of torch's ``Caught X in DataLoader worker process 0.``
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing

from reconfusion.data.scene import DataError

from .dataset import PriorExamples, loader

log = logging.getLogger(__name__)

REAP_TIMEOUT_S = 5.0  # a worker still alive this long after being told to stop is killed


class BadExamples:
    """Counts, logs and limits the examples the stream left out."""

    def __init__(self, limit: int):
        self.limit, self.count = limit, 0

    def report(self, messages: list[str]) -> None:
        for msg in messages:
            self.count += 1
            if self.count > self.limit:
                more = f" ({self.count} bad examples, more than max_bad_examples={self.limit})" if self.limit else ""
                raise DataError(msg + more)
            log.warning("bad example %d of at most %d left out: %s", self.count, self.limit, msg)


class BatchStream:
    """``next_batch()`` -> the next batch with at least one example; ``consumed`` counts every
    batch taken from the stream (skipped ones too)."""

    def __init__(self, batches, bad: BadExamples):
        self._batches, self.bad, self.consumed = batches, bad, 0

    def next_batch(self) -> dict:
        while True:
            try:
                batch = next(self._batches)
            except Exception as exc:  # noqa: BLE001 - torch's worker wrapper: give the worker's own line
                raise worker_error(exc) from exc
            self.consumed += 1
            self.bad.report(batch.pop("bad", []))
            if "target" in batch:
                return batch


def worker_error(exc: BaseException) -> BaseException:
    """``Caught X in DataLoader worker process k.\\nOriginal Traceback ...`` -> ``X`` with the
    traceback's last line as its message (other exceptions unchanged)."""
    text = str(exc)
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return exc
    last = [line for line in text.splitlines() if line.strip()][-1]
    _, sep, message = last.partition(": ")
    try:
        return type(exc)(f"in a data worker: {message if sep else last}")
    except Exception:  # noqa: BLE001 - an exception type that takes other arguments: keep torch's
        return exc


@contextlib.contextmanager
def batch_stream(dataset: PriorExamples, num_workers: int, max_bad_examples: int = 0, pin_memory: bool = False):
    """A :class:`BatchStream` over ``dataset``'s current position; on exit every worker is reaped."""
    before = set(multiprocessing.active_children())
    batches = iter(loader(dataset, num_workers, pin_memory=pin_memory))
    try:
        yield BatchStream(batches, BadExamples(max_bad_examples))
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # torch's own orderly stop, when it has one
        if shutdown is not None:
            shutdown()
        for proc in set(multiprocessing.active_children()) - before:
            proc.join(REAP_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()


__all__ = ["BadExamples", "BatchStream", "batch_stream", "worker_error"]
