"""The overlapped reader / transform / writer: order, bounded look-ahead, real overlap, failures."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.stages import run_overlapped


def _doubled(items: Iterator[int]) -> Iterator[int]:
    for item in items:
        yield 2 * item


def _no_stage_threads_left() -> bool:
    return not any(t.name in ("vsr-read", "vsr-write") for t in threading.enumerate())


def test_outputs_arrive_in_order_and_all_are_sunk() -> None:
    sunk: list[int] = []
    seen: list[int] = []
    times = run_overlapped(iter(range(100)), _doubled, sunk.append, depth=3, on_output=seen.append)
    assert sunk == [2 * i for i in range(100)]
    assert seen == list(range(1, 101))
    assert times.read >= 0 and times.write >= 0
    assert _no_stage_threads_left()


def test_the_reader_stays_a_bounded_distance_ahead() -> None:
    pulled = 0
    lead: list[int] = []

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(50):
            pulled += 1
            yield i

    def transform(items: Iterator[int]) -> Iterator[int]:
        for done, item in enumerate(items, start=1):
            time.sleep(0.002)
            lead.append(pulled - done)
            yield item

    run_overlapped(source(), transform, lambda _: None, depth=4)
    assert max(lead) <= 4 + 1  # the queue, plus the one item the reader holds while it waits


def test_reading_writing_and_the_transform_overlap() -> None:
    """Three stages that each sleep 20 ms per item take about one stage's time, not three."""

    def source() -> Iterator[int]:
        for i in range(20):
            time.sleep(0.02)
            yield i

    def transform(items: Iterator[int]) -> Iterator[int]:
        for item in items:
            time.sleep(0.02)
            yield item

    start = time.perf_counter()
    times = run_overlapped(source(), transform, lambda _: time.sleep(0.02), depth=2)
    wall = time.perf_counter() - start
    serial = times.read + times.write + 20 * 0.02
    assert wall < 0.75 * serial, (wall, serial)


@pytest.mark.parametrize("where", ["source", "transform", "sink", "on_output"])
def test_a_failure_anywhere_is_raised_and_stops_every_stage(where: str) -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(1000):
                if where == "source" and i == 10:
                    raise OSError("disk gone")
                yield i
        finally:
            closed.set()

    def transform(items: Iterator[int]) -> Iterator[int]:
        for item in items:
            if where == "transform" and item == 10:
                raise RuntimeError("model failed")
            yield item

    def sink(item: int) -> None:
        if where == "sink" and item == 10:
            raise ValueError("encoder failed")

    def on_output(count: int) -> None:
        if where == "on_output" and count == 10:
            raise KeyboardInterrupt  # e.g. a cancel: not even an Exception is lost

    expected = {
        "source": OSError,
        "transform": RuntimeError,
        "sink": ValueError,
        "on_output": KeyboardInterrupt,
    }
    with pytest.raises(expected[where]):
        run_overlapped(source(), transform, sink, depth=2, on_output=on_output)
    assert closed.is_set()  # the source generator was closed, not left suspended
    assert _no_stage_threads_left()


def _own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_reader_and_writer_run_at_a_lower_cpu_priority_than_the_transform() -> None:
    caller = _own_niceness()
    reader: list[int] = []
    writer: list[int] = []
    transform: list[int] = []

    def source() -> Iterator[int]:
        reader.append(_own_niceness())
        yield from range(3)

    def noted(items: Iterator[int]) -> Iterator[int]:
        for item in items:
            transform.append(_own_niceness())
            yield item

    run_overlapped(source(), noted, lambda _: writer.append(_own_niceness()), depth=2, io_niceness=5)
    assert reader == [min(19, caller + 5)]
    assert set(writer) == {min(19, caller + 5)} and len(writer) == 3
    assert set(transform) == {caller}  # the calling thread keeps its priority
    assert _own_niceness() == caller


def test_io_niceness_outside_0_to_19_is_refused(tmp_path: Path) -> None:
    from worker.upscale_file import UpscaleOptions
    from worker.video_io import VideoError

    for niceness in (-1, 20):
        with pytest.raises(VideoError, match="io_niceness must be 0-19") as exc_info:
            UpscaleOptions(io_niceness=niceness).validate(tmp_path / "out.mp4")
        assert exc_info.value.code == "unsupported_option"
