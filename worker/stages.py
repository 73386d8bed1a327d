"""Three stages at once: a reader thread, the caller's transform, a writer thread, with bounded queues.

The reader pulls items from `source` into a queue of at most `depth` items; the transform (the model)
runs on the calling thread and its outputs go through a second bounded queue to the writer thread. So
decoding and encoding overlap inference, and memory stays bounded whatever the length. A failure in
any stage stops the others and is raised on the calling thread; nothing is left running.

The reader and writer threads can run at a lower CPU priority (`io_niceness`, Linux per-thread nice,
inherited by the codec threads FFmpeg starts from them), so that where decode and encode share cores
with the model they take the cores' idle moments instead of the model's time.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

A = TypeVar("A")
B = TypeVar("B")
_POLL_S = 0.1  # how often a blocked stage looks whether another one failed
IO_NICENESS = 19  # the lowest: about 1.5 % of a core against a busy model thread, all of an idle one


class _End:
    """Marks the end of a queue's items."""


_END = _End()


@dataclass
class StageTimes:
    """Seconds each side spent in its own work (not waiting): pulling from `source`, in `sink`."""

    read: float = 0.0
    write: float = 0.0


@dataclass
class _Channel(Generic[A]):
    """A bounded queue whose blocking calls give up once `stop` is set."""

    depth: int
    stop: threading.Event
    items: queue.Queue[A | _End] = field(init=False)

    def __post_init__(self) -> None:
        self.items = queue.Queue(maxsize=self.depth)

    def put(self, item: A | _End) -> bool:
        """False if the pipeline stopped before there was room."""
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> A | _End:
        while not self.stop.is_set():
            try:
                return self.items.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END


def lower_thread_priority(niceness: int) -> None:
    """Raise the calling thread's nice value by `niceness` (Linux: nice is per thread; a no-op elsewhere
    or where the system refuses)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    thread_id = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread_id)
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, current + niceness))
    except OSError:
        pass  # an unprivileged thread may always lower its priority; a sandbox may still refuse


class _Failure:
    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def record(self, error: BaseException) -> None:
        with self.lock:
            self.error = self.error or error


def run_overlapped(
    source: Iterator[A],
    transform: Callable[[Iterator[A]], Iterator[B]],
    sink: Callable[[B], None],
    *,
    depth: int,
    on_output: Callable[[int], None] | None = None,
    io_niceness: int = 0,
) -> StageTimes:
    """Feed `source` through `transform` into `sink`, the three running concurrently.

    `on_output(n)` runs on the calling thread after the n-th output was handed to the writer (it may
    raise, e.g. to cancel). Returns once every output was sunk; raises the first failure of any stage.
    `io_niceness`: how much lower the reader's and writer's CPU priority is (0: the same).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    stop, failure, times = threading.Event(), _Failure(), StageTimes()
    inputs: _Channel[A] = _Channel(depth, stop)
    outputs: _Channel[B] = _Channel(depth, stop)

    def read() -> None:
        lower_thread_priority(io_niceness)
        try:
            while True:
                start = time.perf_counter()
                item = next(source, _END)
                times.read += time.perf_counter() - start
                if not inputs.put(item) or item is _END:
                    return
        except BaseException as exc:
            failure.record(exc)
            stop.set()
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator is closed on the thread that ran it

    def write() -> None:
        lower_thread_priority(io_niceness)
        try:
            while not isinstance(item := outputs.get(), _End):
                start = time.perf_counter()
                sink(item)
                times.write += time.perf_counter() - start
        except BaseException as exc:
            failure.record(exc)
            stop.set()

    def pulled() -> Iterator[A]:
        while not isinstance(item := inputs.get(), _End):
            yield item

    threads = [
        threading.Thread(target=read, name="vsr-read"),
        threading.Thread(target=write, name="vsr-write"),
    ]
    for thread in threads:
        thread.start()
    try:
        for count, output in enumerate(transform(pulled()), start=1):
            if not outputs.put(output):
                break
            if on_output is not None:
                on_output(count)
        if not stop.is_set():
            outputs.put(_END)
    except BaseException as exc:
        failure.record(exc)
        stop.set()
    finally:
        threads[1].join()  # the writer drains its queue, or gives up once stopped
        stop.set()  # the reader may still be blocked on a full queue
        threads[0].join()
    if failure.error is not None:
        raise failure.error
    return times
