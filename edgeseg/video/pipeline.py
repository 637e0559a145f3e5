"""A threaded decode → preprocess → infer → postprocess pipeline over a :class:`~edgeseg.Segmenter`.

Each stage runs in its own thread and hands work to the next through a bounded queue, so decoding
frame *i+2* and preprocessing frame *i+1* overlap the backend's inference of frame *i*, and the
stream's throughput approaches the inference-only throughput. torch, ONNX Runtime, TensorRT and
FFmpeg all release the GIL in their heavy calls, which is what makes threads (not processes)
enough here. :meth:`Pipeline.run` hands results to a sink (an encoder, say) in a fifth thread;
:meth:`Pipeline.iterate` yields them to the caller.

Policies:

* **Back-pressure.** Queues are bounded. A file source simply waits; a *live* source (camera, RTSP)
  drops the oldest queued frame instead, so latency stays bounded and the stream stays current.
  Dropped frames are counted.
* **Corrupt input.** A frame that cannot be decoded, or an array that is not an HxWx3 uint8 frame,
  is skipped with a warning and counted; the stream goes on.
* **Stopping.** Setting the ``stop`` event (or Ctrl-C in :meth:`Pipeline.run`) stops reading; the
  frames already in flight are finished and delivered, so an encoder can be flushed and closed
  properly.

* **Priority.** When the backend computes on the CPU, inference and the other stages share the
  cores, and every millisecond the others take preempts the backend. The decode, preprocess,
  postprocess and sink threads therefore run at a lower scheduling priority (Linux ``nice``, see
  ``helper_nice``): they fill the gaps the backend leaves instead of slowing it down. Threads they
  start (FFmpeg's codec threads) inherit it.

Accounting: ``frames_in == frames_out + skipped + dropped`` for every completed stream.

:class:`Pipeline` holds the settings and runs streams; the work of each stage is in ``_Stages``, and
the threads, abort-aware queues and counters they share are in :mod:`edgeseg.video._threads`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from edgeseg.errors import EdgesegError
from edgeseg.runtime.frames import as_frame_batch, check_frame
from edgeseg.runtime.processing import OUTPUT_KINDS, resize_labels, to_output
from edgeseg.runtime.segmenter import SegResult
from edgeseg.video._threads import END, StageThreads, StreamStats
from edgeseg.video.sources import CorruptFrame, FrameSource, open_source

if TYPE_CHECKING:
    from edgeseg.runtime.segmenter import Segmenter

__all__ = ["Pipeline", "StreamStats", "FrameResult", "open_source", "stream", "RENDER_MODES"]

log = logging.getLogger(__name__)

#: What :attr:`FrameResult.image` holds: nothing, the overlay, or the colour-coded class map.
RENDER_MODES = (None, "overlay", "mask")

#: ``nice`` increment of the helper stages on CPU backends. A small gain, measured on 2 cores at
#: 512x1024 with overlay + H.264 encode: +2.7 % pipeline FPS (median of 7 interleaved pairs).
CPU_HELPER_NICE = 10


@dataclass
class FrameResult:
    """One delivered frame.

    Attributes:
        index: the frame's position in the source (skipped frames keep their numbers).
        frame: the input frame (HxWx3 uint8, in the source's channel order).
        result: its segmentation.
        inferred: False when the mask was reused from the last inferred frame (``every`` > 1).
        image: the rendered picture for an encoder (see ``render``), else None.
    """

    index: int
    frame: Any
    result: SegResult
    inferred: bool
    image: Any = None


@dataclass
class _Work:
    indices: list[int]
    frames: torch.Tensor  # (n, H, W, 3) uint8 on the segmenter's device
    originals: list[Any]
    infer_mask: list[bool]
    inputs: torch.Tensor | None = None
    raw: torch.Tensor | None = None


class Pipeline:
    """Streams frames through a Segmenter with one thread per stage.

    Args:
        segmenter: the model.
        batch: frames per backend call. Defaults to 1.
        render: ``"overlay"`` (frame + class colours), ``"mask"`` (class colours only) or None.
            Defaults to None.
        alpha: overlay opacity. Defaults to 0.5.
        every: infer every N-th valid frame and reuse its mask for the frames in between.
            Defaults to 1 (every frame).
        queue_size: capacity of each inter-stage queue, in work items. Defaults to 8.
        output: ``"numpy"`` or ``"torch"`` arrays in the results. Defaults to numpy.
        helper_nice: how much to lower the scheduling priority (Linux ``nice`` increment) of every
            stage but inference. Defaults to :data:`CPU_HELPER_NICE` when the segmenter runs on
            the CPU, else 0 (a GPU backend leaves the cores to the other stages anyway).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        batch: int = 1,
        render: str | None = None,
        alpha: float = 0.5,
        every: int = 1,
        queue_size: int = 8,
        output: str = "numpy",
        helper_nice: int | None = None,
    ) -> None:
        if batch < 1 or every < 1 or queue_size < 1:
            raise EdgesegError(
                f"batch, every and queue_size must be >= 1, got {batch}, {every}, {queue_size}"
            )
        if render not in RENDER_MODES:
            raise EdgesegError(f"render must be one of {RENDER_MODES}, got {render!r}")
        if output not in OUTPUT_KINDS:
            raise EdgesegError(f"output must be 'numpy' or 'torch', got {output!r}")
        self.seg = segmenter
        self.batch = batch
        self.render = render
        self.alpha = alpha
        self.every = every
        self.queue_size = queue_size
        self.output = output
        if helper_nice is None:
            helper_nice = CPU_HELPER_NICE if segmenter.device.type == "cpu" else 0
        if not 0 <= helper_nice <= 19:
            raise EdgesegError(f"helper_nice must be in 0..19, got {helper_nice}")
        self.helper_nice = helper_nice
        self.stats = StreamStats()
        self._threads: StageThreads | None = None  # those of the stream in progress

    # --- public API ---------------------------------------------------------------------------
    def iterate(self, source: Any, stop: threading.Event | None = None) -> Iterator[FrameResult]:
        """Yield results in order while the stages run in the background.

        Args:
            source: a :class:`~edgeseg.video.sources.FrameSource`, a path/URL, or an iterable of
                frames.
            stop: set it to stop reading; in-flight frames are still delivered.
        """
        threads, out = self._start(open_source(source), stop or threading.Event(), sink=None)
        try:
            while (item := threads.next(out)) is not None:
                threads.delivered_one()
                yield item
        finally:
            self._finish(threads)

    def run(
        self,
        source: Any,
        sink: Callable[[FrameResult], None] | None = None,
        stop: threading.Event | None = None,
        on_frame: Callable[[FrameResult, StreamStats], None] | None = None,
    ) -> StreamStats:
        """Process a whole stream, handing each result to ``sink`` (e.g. an encoder) in order.

        The sink runs in a stage thread of its own (at the helpers' priority, see ``helper_nice``);
        ``on_frame`` runs in the caller's thread once the sink has taken the frame.

        Ctrl-C (``KeyboardInterrupt``) stops reading and drains the frames in flight, so the sink
        sees a clean end of stream; a second Ctrl-C abandons the drain. Either way the stage
        threads are joined before returning, and ``stats.interrupted`` is set.

        Args:
            source: as for :meth:`iterate`.
            sink: called with each :class:`FrameResult`, in order, in the sink thread.
            stop: an event that stops reading when set (from another thread, a callback...).
            on_frame: progress callback after each delivered frame.

        Returns:
            The stream's :class:`StreamStats`.
        """
        stop = stop or threading.Event()
        threads, out = self._start(open_source(source), stop, sink=sink)
        try:
            while True:
                try:
                    item = threads.next(out)
                    if item is None:
                        break
                    threads.delivered_one()
                    if on_frame is not None:
                        on_frame(item, self.stats)
                except KeyboardInterrupt:
                    if stop.is_set():
                        raise  # second interrupt: stop draining
                    stop.set()
        finally:
            self._finish(threads)
            if stop.is_set():
                self.stats.interrupted = True
        return self.stats

    # --- machinery ---------------------------------------------------------------------------
    def _start(
        self, source: FrameSource, stop: threading.Event, sink: Callable[[FrameResult], None] | None
    ) -> tuple[StageThreads, queue.Queue[Any]]:
        if self._threads is not None:
            raise EdgesegError("a Pipeline runs one stream at a time; create another Pipeline")
        threads = self._threads = StageThreads()
        self.stats = threads.stats
        return threads, _Stages(self, source, stop, threads).launch(sink)

    def _finish(self, threads: StageThreads) -> None:
        self._threads = None
        threads.finish()


class _Stages:
    """The work of each stage of one stream, and their wiring (:meth:`launch`).

    Args:
        pipeline: the settings.
        source: the frames.
        stop: stops reading when set.
        threads: runs the stages; its queue operations give up when the stream is aborted.
    """

    def __init__(
        self, pipeline: Pipeline, source: FrameSource, stop: threading.Event, threads: StageThreads
    ) -> None:
        self.seg, self.batch, self.every = pipeline.seg, pipeline.batch, pipeline.every
        self.render, self.alpha, self.output = pipeline.render, pipeline.alpha, pipeline.output
        self.queue_size, self.helper_nice = pipeline.queue_size, pipeline.helper_nice
        self.source, self.stop, self.threads = source, stop, threads

    def launch(self, sink: Callable[[FrameResult], None] | None) -> queue.Queue[Any]:
        """Start one thread per stage; returns the queue the results come out of, in order."""
        q_frames: queue.Queue[Any] = queue.Queue(self.queue_size * self.batch)
        q_pre: queue.Queue[Any] = queue.Queue(self.queue_size)
        q_inf: queue.Queue[Any] = queue.Queue(self.queue_size)
        q_out: queue.Queue[Any] = queue.Queue(self.queue_size * self.batch)
        stages: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
            ("decode", self._decode, (q_frames,)),
            ("preprocess", self._prepare, (q_frames, q_pre)),
            ("infer", self._infer, (q_pre, q_inf)),
            ("postprocess", self._post, (q_inf, q_out)),
        ]
        if sink is not None:
            q_done: queue.Queue[Any] = queue.Queue(self.queue_size * self.batch)
            stages.append(("sink", self._deliver, (q_out, q_done, sink)))
            q_out = q_done
        for name, target, args in stages:
            self.threads.start(name, target, *args, nice=0 if name == "infer" else self.helper_nice)
        return q_out

    def _skip(self, index: int, reason: str) -> None:
        message = f"frame {index}: skipped ({reason})"
        log.warning(message)
        self.threads.skipped_one(message)

    def _decode(self, q: queue.Queue[Any]) -> None:
        source, threads = self.source, self.threads
        frames = source.frames()
        try:
            while True:
                started = time.perf_counter()
                item = next(frames, END)
                threads.busy("decode", started)
                if item is END or self.stop.is_set() or threads.aborted:
                    break
                index = threads.read_one()
                if isinstance(item, CorruptFrame):
                    self._skip(index, item.reason)
                elif source.live:
                    threads.put_latest(q, (index, item))
                else:
                    threads.put(q, (index, item))
        finally:
            source.close()
        threads.put(q, END)

    def _prepare(self, q_in: queue.Queue[Any], q_out: queue.Queue[Any]) -> None:
        threads, device = self.threads, self.seg.device
        pending: list[tuple[int, torch.Tensor, Any, bool]] = []
        valid = 0

        def flush() -> None:
            if not pending:
                return
            frames = torch.stack([p[1] for p in pending])
            mask = [p[3] for p in pending]
            work = _Work([p[0] for p in pending], frames, [p[2] for p in pending], mask)
            if any(mask):
                started = time.perf_counter()
                work.inputs = self.seg.preprocess(_select(frames, mask), self.source.color)
                threads.busy("preprocess", started)
            pending.clear()
            threads.put(q_out, work)

        while (item := threads.get(q_in)) is not END:
            index, array = item
            try:
                tensor = _frame_tensor(array, device)
            except EdgesegError as e:
                self._skip(index, str(e))
                continue
            if pending and tensor.shape != pending[0][1].shape:
                flush()  # a batch holds frames of one size
            pending.append((index, tensor, array, valid % self.every == 0))
            valid += 1
            if sum(p[3] for p in pending) >= self.batch or len(pending) >= self.batch * self.every:
                flush()
        flush()
        threads.put(q_out, END)

    def _infer(self, q_in: queue.Queue[Any], q_out: queue.Queue[Any]) -> None:
        threads = self.threads
        while (work := threads.get(q_in)) is not END:
            if work.inputs is not None:
                start = time.perf_counter()
                raw = self.seg.infer(work.inputs)
                if raw.is_cuda:
                    torch.cuda.synchronize(raw.device)  # count the GPU work, not just its launch
                threads.inferred_batch(int(work.inputs.shape[0]), time.perf_counter() - start)
                work.raw = raw
            threads.put(q_out, work)
        threads.put(q_out, END)

    def _post(self, q_in: queue.Queue[Any], q_out: queue.Queue[Any]) -> None:
        threads, color = self.threads, self.source.color
        last_labels: torch.Tensor | None = None
        while (work := threads.get(q_in)) is not END:
            started = time.perf_counter()
            inferred: list[SegResult] = []
            if work.raw is not None:
                frames = _select(work.frames, work.infer_mask)
                inferred = self.seg.postprocess(
                    work.raw,
                    frames,
                    color=color,
                    overlay=self.render == "overlay",
                    alpha=self.alpha,
                    output="torch",
                )
            it = iter(inferred)
            for index, frame, original, is_inferred in zip(
                work.indices, work.frames, work.originals, work.infer_mask, strict=True
            ):
                if is_inferred:
                    result = next(it)
                    last_labels = result.mask
                else:
                    result = self._reuse(last_labels, frame, color)
                image = None
                if self.render == "overlay":
                    image = result.overlay
                elif self.render == "mask":
                    image = self.seg.colorizer.colorize(result.mask, color)
                image = to_output(image, self.output)
                item = FrameResult(index, original, self._emit(result), is_inferred, image)
                threads.busy("postprocess", started)
                threads.put(q_out, item)
                started = time.perf_counter()
        threads.put(q_out, END)

    def _deliver(
        self, q_in: queue.Queue[Any], q_out: queue.Queue[Any], sink: Callable[[FrameResult], None]
    ) -> None:
        threads = self.threads
        while (item := threads.get(q_in)) is not END:
            started = time.perf_counter()
            sink(item)
            threads.busy("sink", started)
            threads.put(q_out, item)
        threads.put(q_out, END)

    def _reuse(self, labels: torch.Tensor | None, frame: torch.Tensor, color: str) -> SegResult:
        if labels is None:  # cannot happen: the first valid frame is always inferred
            raise EdgesegError("no mask to reuse before the first inferred frame")
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if tuple(labels.shape) != size:
            labels = resize_labels(labels[None], size)[0]
        overlay = None
        if self.render == "overlay":
            overlay = self.seg.colorizer.overlay(frame[None], labels[None], self.alpha, color)[0]
        return SegResult(mask=labels, overlay=overlay)

    def _emit(self, r: SegResult) -> SegResult:
        out = self.output
        return SegResult(
            mask=to_output(r.mask, out),
            logits=to_output(r.logits, out),
            probs=to_output(r.probs, out),
            overlay=to_output(r.overlay, out),
        )

def stream(
    segmenter: Segmenter,
    frames: Iterable[Any] | str | os.PathLike[str],
    *,
    color: str = "rgb",
    batch: int = 1,
    overlay: bool = False,
    alpha: float = 0.5,
    every: int = 1,
    queue_size: int = 8,
) -> Iterator[SegResult]:
    """Segment a stream with ``segmenter``, pipelined (decode ∥ preprocess ∥ infer ∥ postprocess).

    Args:
        segmenter: the model.
        frames: an iterable of HxWx3 uint8 frames, or a video path / URL (``rtsp://...``,
            ``/dev/video0``), decoded with PyAV as RGB.
        color: channel order of iterable frames (decoded video is always RGB).
        batch: frames per backend call. Defaults to 1.
        overlay, alpha: see :meth:`~edgeseg.runtime.segmenter.Segmenter.postprocess`.
        every: segment every N-th frame; the frames between reuse the latest mask.
        queue_size: bound of each inter-stage queue (live sources drop the oldest frame when full).

    Yields:
        One :class:`SegResult` per frame that was not skipped as corrupt, in order.
    """
    source = open_source(frames, color=color)
    pipeline = Pipeline(
        segmenter,
        batch=batch,
        render="overlay" if overlay else None,
        alpha=alpha,
        every=every,
        queue_size=queue_size,
    )
    for item in pipeline.iterate(source):
        yield item.result


def _select(frames: torch.Tensor, mask: list[bool]) -> torch.Tensor:
    """The frames whose mask entry is True (no copy when all are)."""
    return frames if all(mask) else frames[torch.tensor(mask)]


def _frame_tensor(array: Any, device: torch.device) -> torch.Tensor:
    """One HxWx3 uint8 frame as a tensor on ``device`` (raises EdgesegError when it is not one)."""
    shape = getattr(array, "shape", None)
    if shape is None:
        raise EdgesegError(f"expected an HxWx3 uint8 frame, got {type(array).__name__}")
    check_frame(shape, getattr(array, "dtype", None), batched=False)
    groups, _ = as_frame_batch(array, device)
    return groups[0][0]
