"""The stage threads of a stream: a failing stage stops the others, live queues keep the newest."""

from __future__ import annotations

import queue
import threading

import pytest

from edgeseg.video._threads import END, StageThreads


def test_a_failing_stage_unblocks_the_others_and_its_error_is_raised() -> None:
    threads = StageThreads()
    full: queue.Queue[int] = queue.Queue(1)
    full.put(0)
    exited = threading.Event()

    def blocked() -> None:
        try:
            threads.put(full, 1)  # nobody reads: waits until the stream is aborted
        finally:
            exited.set()

    def failing() -> None:
        raise ValueError("stage 2 failed")

    threads.start("blocked", blocked)
    threads.start("failing", failing)
    assert exited.wait(5) and threads.aborted
    with pytest.raises(ValueError, match="stage 2 failed"):
        threads.finish()
    assert threads.stats.elapsed_s > 0


def test_put_latest_drops_the_oldest_and_counts_it() -> None:
    threads = StageThreads()
    q: queue.Queue[int] = queue.Queue(2)
    for i in range(5):
        threads.put_latest(q, i)
    assert [q.get_nowait(), q.get_nowait()] == [3, 4] and threads.stats.dropped == 3


def test_next_ends_the_stream_at_the_marker_and_counters_add_up() -> None:
    threads = StageThreads()
    q: queue.Queue[object] = queue.Queue()
    q.put("frame")
    q.put(END)
    assert threads.next(q) == "frame" and threads.next(q) is None
    assert [threads.read_one(), threads.read_one()] == [0, 1]
    threads.skipped_one("frame 1: skipped (bad)")
    threads.inferred_batch(4, 0.5)
    threads.finish()
    stats = threads.stats
    assert (stats.frames_in, stats.skipped, stats.warnings) == (2, 1, ["frame 1: skipped (bad)"])
    assert (stats.inferred, stats.batches, stats.infer_fps, stats.stage_s) == (4, 1, 8.0, {"infer": 0.5})
