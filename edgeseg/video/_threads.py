"""The threads of one :class:`~edgeseg.video.pipeline.Pipeline` stream and what they share.

Stages run in threads of their own and talk through bounded queues. Every blocking queue operation
polls an abort event, so when one stage fails the others exit instead of waiting forever on a queue
nobody serves; the first error is kept and re-raised in the caller's thread by
:meth:`StageThreads.finish`. The stream's counters (:class:`StreamStats`) sit behind one lock,
updated from every stage.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["END", "Aborted", "StageThreads", "StreamStats"]

log = logging.getLogger(__name__)

END = object()  # end-of-stream marker passed down the queues
_POLL_S = 0.05  # how often a blocked stage checks whether the stream was aborted
_MAX_WARNINGS = 20  # warnings kept in the stats (all are logged)


class Aborted(Exception):
    """Raised inside a stage when another stage failed; the stage just exits."""


@dataclass
class StreamStats:
    """Counters of one stream.

    Attributes:
        frames_in: frames read from the source (including corrupt ones).
        frames_out: frames delivered (yielded or written).
        skipped: corrupt/undecodable/invalid frames skipped.
        dropped: frames dropped because a live source outpaced the pipeline.
        inferred: frames that went through the backend (``every`` > 1 reuses masks in between).
        batches: backend calls.
        infer_s: seconds spent inside the backend.
        stage_s: busy seconds of each stage (``decode``, ``preprocess``, ``infer``, ``postprocess``,
            ``sink``): the largest one is the pipeline's bottleneck.
        elapsed_s: wall time of the whole stream.
        interrupted: the stream was stopped before the source ended.
        warnings: the first few skip messages.
    """

    frames_in: int = 0
    frames_out: int = 0
    skipped: int = 0
    dropped: int = 0
    inferred: int = 0
    batches: int = 0
    infer_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Delivered frames per second of wall time."""
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def infer_fps(self) -> float:
        """Frames per second the backend alone sustained (the pipeline's ceiling)."""
        return self.inferred / self.infer_s if self.infer_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view, with the derived rates."""
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "skipped": self.skipped,
            "dropped": self.dropped,
            "inferred": self.inferred,
            "batches": self.batches,
            "infer_s": round(self.infer_s, 4),
            "stage_s": {k: round(v, 4) for k, v in self.stage_s.items()},
            "elapsed_s": round(self.elapsed_s, 4),
            "fps": round(self.fps, 3),
            "infer_fps": round(self.infer_fps, 3),
            "interrupted": self.interrupted,
            "warnings": list(self.warnings),
        }


class StageThreads:
    """Runs the stage threads of one stream; owns its abort event, first error and counters.

    The stream's clock starts at construction and stops in :meth:`finish`.
    """

    def __init__(self) -> None:
        self.stats = StreamStats()
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._t0 = time.perf_counter()

    @property
    def aborted(self) -> bool:
        """A stage failed, or :meth:`finish` was called."""
        return self._abort.is_set()

    # --- lifetime ----------------------------------------------------------------------------
    def start(self, name: str, target: Callable[..., None], *args: Any, nice: int = 0) -> None:
        """Run ``target(*args)`` in a daemon thread ``edgeseg-<name>``, ``nice`` lower in priority."""
        t = threading.Thread(
            target=self._guard, args=(target, nice, *args), name=f"edgeseg-{name}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def finish(self) -> None:
        """Abort what still runs, join every thread, stop the clock, re-raise a stage's error."""
        self._abort.set()  # a no-op for finished stages; unblocks any still waiting
        for t in self._threads:
            t.join()
        self.stats.elapsed_s = time.perf_counter() - self._t0
        if self._error is not None:
            raise self._error

    def _guard(self, target: Callable[..., None], nice: int, *args: Any) -> None:
        if nice:
            _lower_priority(nice)
        try:
            target(*args)
        except Aborted:
            pass
        except BaseException as e:  # a failing stage must not hang the others: record and abort all
            with self._lock:
                if self._error is None:
                    self._error = e
            self._abort.set()

    # --- queues ------------------------------------------------------------------------------
    def next(self, q: queue.Queue[Any]) -> Any:
        """The caller's next result, or None at the end of the stream or once aborted."""
        try:
            item = self.get(q)
        except Aborted:
            return None  # finish() re-raises the stage's error
        return None if item is END else item

    def get(self, q: queue.Queue[Any]) -> Any:
        """Blocking get that raises :class:`Aborted` once the stream is aborted."""
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if self._abort.is_set():
                    raise Aborted from None

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        """Blocking put that raises :class:`Aborted` once the stream is aborted."""
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self._abort.is_set():
                    raise Aborted from None

    def put_latest(self, q: queue.Queue[Any], item: Any) -> None:
        """Live sources: never wait; make room by dropping (and counting) the oldest queued item."""
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    with self._lock:
                        self.stats.dropped += 1
                except queue.Empty:
                    pass

    # --- counters ----------------------------------------------------------------------------
    def read_one(self) -> int:
        """Count a frame read from the source; returns its index."""
        with self._lock:
            self.stats.frames_in += 1
            return self.stats.frames_in - 1

    def delivered_one(self) -> None:
        """Count a frame handed to the caller."""
        with self._lock:
            self.stats.frames_out += 1

    def skipped_one(self, message: str) -> None:
        """Count a skipped frame, keeping the first few messages."""
        with self._lock:
            self.stats.skipped += 1
            if len(self.stats.warnings) < _MAX_WARNINGS:
                self.stats.warnings.append(message)

    def busy(self, stage: str, started: float) -> None:
        """Add the time since ``started`` (``time.perf_counter()``) to ``stage``'s busy seconds."""
        elapsed = time.perf_counter() - started
        with self._lock:
            self.stats.stage_s[stage] = self.stats.stage_s.get(stage, 0.0) + elapsed

    def inferred_batch(self, frames: int, seconds: float) -> None:
        """Count one backend call of ``frames`` frames that took ``seconds``."""
        with self._lock:
            self.stats.infer_s += seconds
            self.stats.stage_s["infer"] = self.stats.infer_s
            self.stats.inferred += frames
            self.stats.batches += 1


def _lower_priority(increment: int) -> None:
    """Lower the calling thread's scheduling priority by ``increment`` (Linux: nice is per thread)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + increment, 19))
    except OSError as e:  # a sandbox may forbid it; the pipeline works the same, only slower
        log.debug("could not lower the priority of %s: %s", threading.current_thread().name, e)
