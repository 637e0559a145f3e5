"""The threaded video pipeline end to end on a generated clip: accounting, order, skips, stops."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeseg import Segmenter
from edgeseg.errors import EdgesegError
from edgeseg.video import FrameResult, IterableSource, Pipeline, StreamStats, VideoSource, VideoWriter, stream
from edgeseg.video.pipeline import CPU_HELPER_NICE

Decode = Callable[[Path], tuple[list[np.ndarray], Fraction | None]]


def _encode(seg: Segmenter, source: Any, out: Path, **kwargs: Any) -> StreamStats:
    """Run the pipeline into a VideoWriter the way `edgeseg video` does."""
    src = source if not isinstance(source, Path) else VideoSource(source)
    writer: VideoWriter | None = None

    def sink(item: FrameResult) -> None:
        nonlocal writer
        if writer is None:
            h, w = item.image.shape[:2]
            writer = VideoWriter(out, w, h, fps=getattr(src, "fps", None))
        writer.write(item.image)

    on_frame = kwargs.pop("on_frame", None)
    pipeline = Pipeline(seg, render=kwargs.pop("render", "overlay"), **kwargs)
    try:
        return pipeline.run(src, sink=sink, on_frame=on_frame)
    finally:
        if writer is not None:
            writer.close()


def test_clip_end_to_end(seg: Segmenter, clip: Path, tmp_path: Path, decode_all: Decode) -> None:
    out = tmp_path / "out.mp4"
    stats = _encode(seg, clip, out, batch=4)
    assert stats.frames_in == 24 and stats.frames_out == 24 and stats.skipped == 0 and stats.dropped == 0
    assert stats.inferred == 24 and stats.batches == 6 and not stats.interrupted
    assert stats.fps > 0 and stats.infer_fps > 0
    frames, rate = decode_all(out)
    assert len(frames) == 24 and frames[0].shape == (96, 128, 3)
    assert rate == Fraction(25)  # the input's frame rate is kept
    assert not list(tmp_path.glob(".*partial*"))  # the temporary was renamed into place


def test_results_in_order_and_equal_to_direct_calls(seg: Segmenter, clip_frames: list[np.ndarray]) -> None:
    pipeline = Pipeline(seg, batch=3, queue_size=2)
    results = list(pipeline.iterate(clip_frames))
    assert [r.index for r in results] == list(range(24))
    direct = seg(np.stack(clip_frames))
    for got, want in zip(results, direct, strict=True):
        np.testing.assert_array_equal(got.result.mask, want.mask)
    assert pipeline.stats.frames_out == 24


class _FlakyCamera:
    """An iterator (not a generator, so it can resume) that fails once and returns garbage once."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.i = frames, 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        i = self.i
        self.i += 1
        if i >= len(self.frames):
            raise StopIteration
        if i == 5:
            return np.zeros((96, 128), np.uint8)  # a grayscale frame slipped in
        if i == 9:
            raise OSError("USB read timed out")
        return self.frames[i]


def test_corrupt_frames_are_skipped_and_counted(
    seg: Segmenter, clip_frames: list[np.ndarray], tmp_path: Path, decode_all: Decode
) -> None:
    out = tmp_path / "flaky.mp4"
    stats = _encode(seg, IterableSource(_FlakyCamera(clip_frames), fps=25), out, batch=2)
    assert stats.frames_in == 24 and stats.skipped == 2 and stats.frames_out == 22
    assert stats.frames_in == stats.frames_out + stats.skipped + stats.dropped
    assert any("frame 5" in w and "grayscale" in w for w in stats.warnings)
    assert any("frame 9" in w and "USB read timed out" in w for w in stats.warnings)
    frames, _ = decode_all(out)
    assert len(frames) == 22


@pytest.mark.parametrize("how", ["stop_event", "ctrl_c"])
def test_stop_mid_stream_leaves_a_valid_file(
    seg: Segmenter, clip: Path, tmp_path: Path, decode_all: Decode, how: str
) -> None:
    out = tmp_path / f"{how}.mp4"
    stop = threading.Event()
    fired = []

    def on_frame(item: FrameResult, stats: StreamStats) -> None:
        if stats.frames_out == 6 and not fired:
            fired.append(True)
            if how == "stop_event":
                stop.set()
            else:
                raise KeyboardInterrupt  # what Ctrl-C raises in the consuming thread

    src = VideoSource(clip)
    writer = VideoWriter(out, 128, 96, fps=src.fps)
    pipeline = Pipeline(seg, render="overlay", queue_size=1)
    try:
        stats = pipeline.run(src, sink=lambda item: writer.write(item.image), stop=stop, on_frame=on_frame)
    finally:
        writer.close()
    assert stats.interrupted
    assert 6 <= stats.frames_out < 24  # in-flight frames are finished, the rest never read
    assert stats.frames_in == stats.frames_out + stats.skipped
    frames, _ = decode_all(out)
    assert len(frames) == stats.frames_out == writer.frames_written


def test_every_n_reuses_last_mask(seg: Segmenter, clip_frames: list[np.ndarray]) -> None:
    pipeline = Pipeline(seg, every=3, batch=2, render="mask")
    results = list(pipeline.iterate(clip_frames))
    assert pipeline.stats.inferred == 8 and len(results) == 24
    assert [r.inferred for r in results[:4]] == [True, False, False, True]
    np.testing.assert_array_equal(results[1].result.mask, results[0].result.mask)
    np.testing.assert_array_equal(results[3].result.mask, seg(clip_frames[3]).mask)
    assert results[2].image.shape == (96, 128, 3)


def test_live_source_drops_oldest_when_behind(seg: Segmenter, clip_frames: list[np.ndarray]) -> None:
    source = IterableSource(clip_frames * 5, live=True)  # 120 frames, produced instantly
    pipeline = Pipeline(seg, queue_size=1)
    stats = pipeline.run(source, on_frame=lambda item, stats: time.sleep(0.005))  # a slow consumer
    assert stats.dropped > 0
    assert stats.frames_in == 120 == stats.frames_out + stats.skipped + stats.dropped


def test_stage_failure_propagates(seg: Segmenter, clip_frames: list[np.ndarray]) -> None:
    class Boom(Exception):
        pass

    def sink(item: FrameResult) -> None:
        if item.index == 3:
            raise Boom

    with pytest.raises(Boom):
        Pipeline(seg).run(clip_frames, sink=sink)


def test_one_stream_at_a_time_then_reusable(seg: Segmenter, clip_frames: list[np.ndarray]) -> None:
    pipeline = Pipeline(seg)
    results = pipeline.iterate(clip_frames)
    assert next(results).index == 0
    with pytest.raises(EdgesegError, match="a Pipeline runs one stream at a time"):
        pipeline.run(clip_frames)
    results.close()  # joins the first stream's threads
    stats = pipeline.run(clip_frames[:5])
    assert stats.frames_in == stats.frames_out == 5 and pipeline.stats is stats


def test_stream_over_a_file(seg: Segmenter, clip: Path) -> None:
    masks = [r.mask for r in stream(seg, clip, batch=4, overlay=True)]
    assert len(masks) == 24 and masks[0].shape == (96, 128)


def test_bad_pipeline_options(seg: Segmenter, tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match=r"batch, every and queue_size must be >= 1, got 0, 1, 8"):
        Pipeline(seg, batch=0)
    with pytest.raises(EdgesegError, match="render"):
        Pipeline(seg, render="both")
    with pytest.raises(EdgesegError, match="not found"):
        VideoSource(tmp_path / "missing.mp4")


def test_live_urls_and_a_file_read_as_live(seg: Segmenter, clip: Path) -> None:
    from edgeseg.video.sources import is_live_url

    assert is_live_url("rtsp://10.0.0.2/stream") and is_live_url("/dev/video0") and is_live_url("HTTP://cam/x")
    assert not is_live_url("clip.mp4")
    # A file decoded under the live policy: frames the slow consumer cannot take are dropped, not queued.
    slow = lambda item, stats: time.sleep(0.02)  # noqa: E731
    stats = Pipeline(seg, queue_size=1).run(VideoSource(clip, live=True), on_frame=slow)
    assert stats.frames_in == 24 == stats.frames_out + stats.dropped and stats.dropped > 0


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
@pytest.mark.parametrize("helper_nice", [None, 0, 3])
def test_helper_stages_yield_to_inference(
    seg: Segmenter, clip_frames: list[np.ndarray], monkeypatch: pytest.MonkeyPatch, helper_nice: int | None
) -> None:
    seen: dict[str, set[int]] = {"infer": set(), "sink": set()}
    infer = seg.infer

    def spy_infer(x: Any) -> Any:
        seen["infer"].add(_nice())
        return infer(x)

    def sink(item: FrameResult) -> None:
        assert threading.current_thread() is not threading.main_thread()  # the sink has its own thread
        seen["sink"].add(_nice())

    monkeypatch.setattr(seg, "infer", spy_infer)
    base = _nice()
    stats = Pipeline(seg, helper_nice=helper_nice).run(clip_frames[:4], sink=sink)
    want = {None: min(base + CPU_HELPER_NICE, 19), 0: base, 3: min(base + 3, 19)}[helper_nice]
    assert stats.frames_out == 4 and seen == {"infer": {base}, "sink": {want}}
    assert _nice() == base  # the caller's own priority is never touched
    with pytest.raises(EdgesegError, match="helper_nice"):
        Pipeline(seg, helper_nice=20)
