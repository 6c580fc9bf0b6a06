"""`Batcher`: calls from many threads gathered into batches for one batch function.

A worker thread takes the first waiting item, then keeps collecting until the batch is full or
`timeout_ms` has passed since that first item, runs the batch function once, and hands each caller its
own result. When a batch fails, its items are retried one by one, so one caller's bad input raises only
for that caller.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

_STOP = object()


class Batcher:
    """Run `function(items) -> results` (same length and order) over batches of concurrently submitted items.

    Options: `max_batch_size` [8], items per call of `function`; `timeout_ms` [5.0], how long the first
    item of a batch waits for company. `batches_run` and `items_run` count what has run (observable
    batching); `on_batch`, when set, is called with the size of each batch run (metrics).
    """

    def __init__(self, function: Callable[[list[Any]], Sequence[Any]], *, max_batch_size: int = 8,
                 timeout_ms: float = 5.0, name: str = "bombus-batcher"):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.function = function
        self.max_batch_size = max_batch_size
        self.timeout = timeout_ms / 1000.0
        self.batches_run = 0
        self.items_run = 0
        self.on_batch: Callable[[int], None] | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._name = name

    def submit(self, item: Any) -> Future:
        """Queue `item`; the returned future holds its result (or its exception)."""
        future: Future = Future()
        self._start()
        self._queue.put((item, future))
        return future

    def __call__(self, item: Any) -> Any:
        """Run `item` in the next batch and wait for its result."""
        return self.submit(item).result()

    def map(self, items: Sequence[Any]) -> list[Any]:
        """Submit every item, then wait for all: a caller's list joins other callers' batches."""
        futures = [self.submit(item) for item in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the worker after the items already queued."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(_STOP)
                self._thread.join()
                self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.timeout
            stop = False
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    stop = True
                    break
                batch.append(entry)
            self._run([b for b in batch if not b[1].cancelled()])
            if stop:
                return

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        if not batch:
            return
        try:
            results = list(self.function([item for item, _ in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except BaseException as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                self._count(1)
                return
            for entry in batch:  # isolate the failing item: each caller gets its own outcome
                self._run([entry])
            return
        self._count(len(batch))
        for (_, future), result in zip(batch, results):
            future.set_result(result)

    def _count(self, items: int) -> None:
        self.batches_run += 1
        self.items_run += items
        if self.on_batch is not None:
            self.on_batch(items)
