"""What a training run shows and records: a rich progress bar and a JSON-lines log.

The log (``<out_dir>/log.jsonl``) gets one JSON object per line — ``{"event": "train", ...}`` every
``log_every`` iterations, ``{"event": "eval", ...}`` after each evaluation, and start / resume /
end markers — so a background run can be polled with ``tail -f`` or plotted later. Only the main
process (rank 0) creates a monitor that does anything.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["TrainMonitor"]


class TrainMonitor:
    """Progress bar (iteration, loss, lr, it/s, last mIoU) plus the JSON-lines log.

    Args:
        total: the run's final iteration.
        start: iteration the bar starts from (non-zero after ``--resume``).
        log_path: JSON-lines file, appended to; ``None`` disables the log.
        log_every: write a ``train`` record every this many iterations.
        console: where the bar is drawn. Defaults to a new stderr console.
        show_progress: draw the bar. Defaults to True.
        enabled: False turns every method into a no-op (non-zero ranks).
    """

    def __init__(self, total: int, *, start: int = 0, log_path: str | Path | None = None,
                 log_every: int = 10, console: Console | None = None, show_progress: bool = True,
                 enabled: bool = True) -> None:
        self.total, self.start, self.log_every = total, start, log_every
        self.enabled = enabled
        self.log_path = Path(log_path) if log_path is not None and enabled else None
        self._log: IO[str] | None = None
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._last_miou = math.nan
        self._progress: Progress | None = None
        if enabled and show_progress:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"),
                TextColumn("{task.fields[rate]:.2f} it/s"), TextColumn("mIoU {task.fields[miou]}"),
                TimeRemainingColumn(), console=console or Console(stderr=True), transient=False)
            self._task = self._progress.add_task("train", total=total, completed=start, loss=math.nan,
                                                 lr=0.0, rate=0.0, miou="-")

    def __enter__(self) -> TrainMonitor:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in __exit__
        if self._progress is not None:
            self._progress.start()
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def elapsed(self) -> float:
        """Seconds since the monitor was entered."""
        return time.perf_counter() - self._t0

    @property
    def cpu_time(self) -> float:
        """CPU seconds of this process (all its threads, not DataLoader workers) since entered.

        On a machine shared with other jobs, wall time depends on their load; CPU time measures
        the training's own cost.
        """
        return time.process_time() - self._cpu0

    def rate(self, iteration: int) -> float:
        """Iterations per second over this session (excludes iterations done before a resume)."""
        return (iteration - self.start) / max(self.elapsed, 1e-9)

    def record(self, event: str, **fields: Any) -> None:
        """Append one ``{"event": event, "time": ..., **fields}`` line to the log and flush it."""
        if self._log is None:
            return
        line = {"event": event, "time": round(self.elapsed, 3), "cpu_time": round(self.cpu_time, 3), **fields}
        self._log.write(json.dumps(line) + "\n")
        # Flushed per line so a background run can be polled while it trains.
        self._log.flush()

    def step(self, iteration: int, loss: float, parts: dict[str, float], lr: float) -> None:
        """Report that ``iteration`` steps are done.

        Args:
            iteration: optimizer steps taken so far.
            loss: the step's total (weighted) loss.
            parts: unweighted value of each loss term (``out`` and auxiliary keys).
            lr: learning rate used by the step.
        """
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, loss=loss, lr=lr,
                                  rate=self.rate(iteration))
        if iteration % self.log_every == 0 or iteration == self.total:
            self.record("train", iter=iteration, loss=round(loss, 6), lr=lr,
                        it_per_s=round(self.rate(iteration), 4),
                        **{f"loss_{k}": round(v, 6) for k, v in parts.items()})

    def evaluation(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Show the new mIoU on the bar and log the metrics."""
        if not self.enabled:
            return
        self._last_miou = float(metrics.get("miou", math.nan))
        if self._progress is not None:
            self._progress.update(self._task, miou=f"{self._last_miou:.2f}")
        self.record("eval", iter=iteration, **metrics)
