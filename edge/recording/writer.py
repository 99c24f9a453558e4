"""The recorder's writer thread: a bounded queue between the live loop and the disk.

The processing thread only `WriterThread.offer`s items (never blocks): when the queue
is full (in frames, or in bytes: a few frames of an 8K source are gigabytes) the frame is
dropped and counted, and the next frame that gets through
carries the count of frames lost just before it (``item.drops``), so the drop can be
booked to the session that holds the frames around it. Everything slow (encoding,
writing, quota) runs in the callbacks on the writer's own thread.

Stop: `stop` asks the thread to finish the queue; if it takes too long `abort` makes
it hand what is still queued to ``discard`` instead, then ``finish`` runs either way.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def _nothing() -> None:
    pass


class WriterThread:
    """One daemon thread running ``handle`` on queued items, in order.

    maxsize: queue length; more offered frames are dropped (counted in ``dropped``).
    max_bytes: memory the queued items may hold (``item.nbytes``, bytes); a frame that would pass it
        is dropped and counted too (also in ``dropped_over_bytes``), except into an empty queue: one
        frame always fits, so a frame larger than the cap alone still gets written. None: no cap.
    handle(item): the work for one item. tick(): called after each item and about every
    ``poll_s`` while the queue is empty (periodic checks). setup(): first, on the thread.
    on_error(e): an exception from setup, handle or tick (the thread goes on).
    discard(item): an item never handled because of `abort`. finish(late_drops): last,
    with the frames dropped after the last offered frame that got through.

    Counters are written by one thread each: ``dropped`` by the offering thread. ``queued_bytes``
    (and its peak, ``queued_bytes_max``) change under a lock from both.
    """

    def __init__(
        self,
        maxsize: int,
        handle: Callable[[Any], None],
        *,
        max_bytes: float | None = None,
        tick: Callable[[], None] = _nothing,
        setup: Callable[[], None] = _nothing,
        on_error: Callable[[BaseException], None],
        discard: Callable[[Any], None],
        finish: Callable[[int], None],
        name: str = "nerveseg-writer",
        poll_s: float = 0.25,
    ):
        # (item, its bytes): the size is taken once, on the offering thread
        self._queue: queue.Queue[tuple[Any, int]] = queue.Queue(maxsize=maxsize)
        self._max_bytes = max_bytes
        self._bytes_lock = threading.Lock()
        self.queued_bytes = 0
        self.queued_bytes_max = 0
        self.dropped_over_bytes = 0
        self._handle = handle
        self._tick = tick
        self._setup = setup
        self._on_error = on_error
        self._discard = discard
        self._finish = finish
        self._name = name
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # frames offered while the queue was full
        self._stamped = 0  # ``dropped`` when the last frame got through

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def aborting(self) -> bool:
        """True once `abort` was called: long work should give up and count what it leaves."""
        return self._abort.is_set()

    def qsize(self) -> int:
        return self._queue.qsize()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def offer(self, item: Any, frame: bool = True) -> bool:
        """Queue ``item`` without waiting; False when the queue is full (the item is lost).

        frame: the item is a frame: a full queue counts it in ``dropped``, and a queued one
        gets ``item.drops`` = frames dropped since the previous queued frame. Other items
        (commands) are neither stamped nor counted.
        """
        if frame:
            item.drops = self.dropped - self._stamped
        n = int(getattr(item, "nbytes", 0)) if frame else 0
        queued = over_bytes = False
        with self._bytes_lock:
            cap = self._max_bytes
            over_bytes = cap is not None and self.queued_bytes > 0 and self.queued_bytes + n > cap
            if not over_bytes:
                try:
                    self._queue.put_nowait((item, n))
                    queued = True
                except queue.Full:
                    pass
            if queued:
                self.queued_bytes += n
                self.queued_bytes_max = max(self.queued_bytes_max, self.queued_bytes)
        if queued:
            if frame:
                self._stamped += item.drops
            return True
        if frame:
            self.dropped += 1
            if over_bytes:
                self.dropped_over_bytes += 1
                if self.dropped_over_bytes == 1:  # once a run: the drop counters tell the rest
                    logger.warning("%s: %.0f MB of frames wait for the disk (the cap): frames are dropped and "
                                   "counted until it catches up", self._name, self.queued_bytes / 1e6)
        return False

    def stop(self) -> None:
        """Ask the thread to handle what is queued and finish."""
        self._stop.set()

    def abort(self) -> None:
        """Ask the thread to discard what is queued and finish now."""
        self._stop.set()
        self._abort.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the thread; True when it has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        self._guarded(self._setup)
        while True:
            if self._abort.is_set():
                self._discard_queue()
                break
            try:
                item = self._take(self._queue.get(timeout=self._poll_s))
            except queue.Empty:
                if self._stop.is_set():
                    break
                self._guarded(self._tick)
                continue
            self._guarded(self._handle, item)
            self._guarded(self._tick)
        try:
            # The processing thread no longer offers frames (stop was set before the join).
            self._finish(self.dropped - self._stamped)
        except Exception:
            logger.exception("%s: finishing failed", self._name)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - the writer fails, the live overlay must not
            try:
                self._on_error(e)
            except Exception:
                logger.exception("%s: error handler failed on %r", self._name, e)

    def _take(self, entry: tuple[Any, int]) -> Any:
        item, n = entry
        with self._bytes_lock:
            self.queued_bytes -= n
        return item

    def _discard_queue(self) -> None:
        while True:
            try:
                item = self._take(self._queue.get_nowait())
            except queue.Empty:
                return
            self._discard(item)
