"""Accuracy guard: keep the most quantization-sensitive layers out of INT8 until accuracy holds.

After quantizing, the INT8 graph (ONNX Runtime, CPU, Q/DQ as float fake-quantization) is evaluated
on a labelled validation set against the FP32 graph it was quantized from. If its mIoU drop exceeds
the budget, or its pixel agreement with the FP32 graph is below the validation gate, layers are ranked by
sensitivity and excluded from INT8, most sensitive first, re-quantizing with the cached scales (no
recalibration) until both hold. Agreement is part of the target because it is the steadier signal:
on a few dozen images a mIoU difference of a few tenths of a point is noise, while a drop in
agreement is measured over every pixel.

Sensitivity is end to end (:mod:`edgeseg.precision.sensitivity`): what quantizing a layer does to
the graph's output, ranked lazily, so only as many layers are scored alone as the exclusion steps
need. Interactions between layers are ignored; the loop re-evaluates the real graph after every
exclusion step, so they only cost extra steps. An optional cheap prediction picks the step the
search starts from (see :func:`run_accuracy_guard`); verdicts are always real evaluations. A step
whose re-quantized graph is byte for byte one already evaluated (modelopt ignored the exclusion)
reuses that evaluation: same graph, same verdict.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeseg.errors import AccuracyGateError, EdgesegError
from edgeseg.metrics import against

__all__ = [
    "Evaluation",
    "GuardResult",
    "ReferenceEvaluator",
    "Ranking",
    "run_accuracy_guard",
    "exclusion_schedule",
]

Progress = Callable[[int, int], None]


class Ranking(Protocol):
    """INT8 layers by sensitivity, most sensitive first (see ``sensitivity.SensitivityRanking``)."""

    def __len__(self) -> int: ...

    def top(self, k: int) -> list[tuple[str, float]]: ...

    @property
    def ranked(self) -> list[tuple[str, float]]: ...


class _ListRanking(list):  # type: ignore[type-arg]
    """A ranking already complete (``[(layer, score)]``, most sensitive first)."""

    def top(self, k: int) -> list[tuple[str, float]]:
        return list(self[:k])

    @property
    def ranked(self) -> list[tuple[str, float]]:
        return list(self)


@dataclass
class Evaluation:
    """Accuracy of one deployed graph against the FP32 reference.

    Args:
        miou: mIoU of the graph on the validation labels (percent).
        reference_miou: mIoU of the FP32 reference on the same images (percent).
        pixel_agreement: share of pixels whose class equals the reference's (percent).
        images: number of validation images evaluated.
        stopped_early: the evaluation stopped before the last image because the agreement gate
            could no longer be met (the figures then cover ``images`` images only).
    """

    miou: float
    reference_miou: float
    pixel_agreement: float
    images: int
    stopped_early: bool = False

    @property
    def drop(self) -> float:
        """mIoU points lost against the FP32 reference (negative when INT8 happens to score higher)."""
        return self.reference_miou - self.miou

    def to_dict(self) -> dict[str, Any]:
        return {"miou": round(self.miou, 4), "reference_miou": round(self.reference_miou, 4),
                "miou_drop": round(self.drop, 4), "pixel_agreement": round(self.pixel_agreement, 4),
                "images": self.images, **({"stopped_early": True} if self.stopped_early else {})}


class ReferenceEvaluator:
    """Scores deployed graphs against the FP32 reference on one labelled image set.

    The reference predictions are computed once; each :meth:`evaluate` runs only the graph
    (ONNX Runtime, as :func:`edgeseg.runners.loader.ort_settings` opens it) and compares the two with
    :func:`edgeseg.compare.compare_outputs`, the comparator ``edgeseg validate`` uses.

    Args:
        images: float32 ``(N, 3, H, W)`` preprocessed validation images.
        masks: int64 ``(N, H, W)`` labels, or None for unlabelled images.
        reference: int64 ``(N, H, W)`` class maps of the FP32 model.
        num_classes: number of classes.
        ignore_index: label excluded from mIoU. Defaults to 255.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray | None, reference: np.ndarray, num_classes: int,
                 ignore_index: int = 255) -> None:
        self.images, self.masks, self.reference = images, masks, reference
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # Order of evaluation: the images the last evaluation got most wrong come first, so a
        # failing graph shows it after few images (see ``stop_below`` in :meth:`evaluate`).
        self._order = np.arange(len(images))
        self._wrong: dict[int, int] = {}  # image → pixels the last evaluation got wrong

    @classmethod
    def from_runner(cls, runner: Any, images: np.ndarray, masks: np.ndarray | None, num_classes: int, *,
                    ignore_index: int = 255, batch_size: int = 1,
                    progress: Progress | None = None) -> ReferenceEvaluator:
        """Run the FP32 reference (an inactive runner: PyTorch, or an FP32 ONNX graph) once.

        Only class maps are kept, batch by batch: at 1024x2048 one image's 19-class logits are
        160 MB, and holding them for every tuning image cost gigabytes.
        """
        from edgeseg.compare import infer
        from edgeseg.metrics import to_labels

        labels = []
        with runner:
            for start in range(0, len(images), batch_size):
                labels.append(to_labels(infer(runner, images[start:start + batch_size])).numpy())
                if progress:
                    progress(min(start + batch_size, len(images)), len(images))
        return cls(images, masks, np.concatenate(labels), num_classes, ignore_index)

    def worst(self, n: int) -> tuple[np.ndarray, int]:
        """The ``n`` images the last evaluation got most wrong: their indices and wrong pixels.

        Before any evaluation, the first ``n`` images and 0.
        """
        index = self._order[:n].copy()
        return index, sum(self._wrong.get(int(i), 0) for i in index)

    def evaluate(self, onnx_path: str | os.PathLike[str], progress: Progress | None = None, *,
                 stop_below: float | None = None) -> Evaluation:
        """mIoU and pixel agreement of the graph at ``onnx_path`` against the reference.

        Args:
            onnx_path: the deployed graph.
            progress: called as ``progress(images done, N)``.
            stop_below: a pixel agreement gate (percent). Once the pixels that already differ
                from the reference are too many for the whole set to reach it, the remaining
                images are not run: the graph fails the gate whatever they hold, so the guard
                decides exactly as after a full evaluation. The result then has
                ``stopped_early`` set and figures over the images run. Defaults to None (all).
        """
        from edgeseg.compare import compare_outputs, infer
        from edgeseg.metrics import to_labels
        from edgeseg.runners.loader import runner_for

        total = self.reference.size
        # Differing pixels beyond which the agreement over all images is certainly below the gate.
        allowed = math.inf if stop_below is None else total * (1.0 - stop_below / 100.0)
        done: list[int] = []
        labels: list[np.ndarray] = []
        wrong: list[int] = []
        # Opened like every artifact (runners.loader), so the guard judges as validation does.
        with runner_for(onnx_path, side_by_side=True) as runner:
            batch = _static_batch(runner)
            for start in range(0, len(self._order), batch):
                index = self._order[start:start + batch]
                out = to_labels(infer(runner, self.images[index])).numpy()
                done.extend(int(i) for i in index)
                labels.append(out)
                wrong.extend(int(n) for n in (out != self.reference[index]).reshape(len(index), -1).sum(1))
                if progress:
                    progress(len(done), len(self._order))
                if sum(wrong) > allowed and len(done) < len(self._order):
                    break
        stopped = len(done) < len(self._order)
        # Worst first next time; after a stop, the images not run keep their place behind those run
        # (a stopped run has seen the images with the most wrong pixels so far: they stop the next
        # failing graph sooner).
        ran = np.array(done)[np.argsort(-np.array(wrong), kind="stable")]
        self._wrong = dict(zip(done, wrong, strict=True))
        self._order = np.concatenate([ran, self._order[len(done):]])
        # compare_outputs sees the images in the order run; its figures are sums over images.
        idx = np.array(done)
        outputs = np.concatenate(labels)
        # Without labels the reference's own predictions are the targets: mIoU then measures agreement.
        targets = (self.masks if self.masks is not None else self.reference)[idx]
        m = compare_outputs(self.reference[idx], outputs, num_classes=self.num_classes, targets=targets,
                            ignore_index=self.ignore_index)
        assert m.reference is not None and m.other is not None  # targets were given
        return Evaluation(miou=m.other.miou, reference_miou=m.reference.miou,
                          pixel_agreement=m.pixel_agreement, images=len(idx), stopped_early=stopped)


def _static_batch(runner: Any) -> int:
    """Images per call: the graph's static batch, else one (the guard's graphs are static batch)."""
    shape = runner.get_input_metadata()[0].shape
    return shape[0] if shape and isinstance(shape[0], int) else 1


def exclusion_schedule(num_candidates: int) -> list[int]:
    """How many top-ranked layers to exclude at each guard step: 1, 2, 3, 4, then ×1.5 to all."""
    steps, k = [], 1
    while k < num_candidates:
        steps.append(k)
        k = k + 1 if k < 4 else int(np.ceil(k * 1.5))
    steps.append(num_candidates)
    return [s for s in steps if s > 0]


@dataclass
class GuardResult:
    """Outcome of :func:`run_accuracy_guard`.

    Args:
        budget: allowed mIoU drop (points).
        evaluation: accuracy of the final graph.
        min_agreement: required pixel agreement with the FP32 reference (percent).
        excluded: layers kept out of INT8, most sensitive first.
        ranking: ``(layer, relative output error)`` of the layers ranked (every layer the steps
            reached, at least), most sensitive first (when ranked).
        layers: INT8 layers the ranking chose from (0 when not ranked).
        rank_sessions: graph runs the ranking took, where the ranking counts them.
        steps: every attempt: ``{"excluded": k, "miou_drop": ..., "pixel_agreement": ...}``.
        seconds: wall time spent quantizing, evaluating and ranking (what the guard costs).
    """

    budget: float
    evaluation: Evaluation
    min_agreement: float = 0.0
    excluded: list[str] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)
    layers: int = 0
    rank_sessions: int | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_miou_drop": self.budget,
            "min_pixel_agreement": self.min_agreement,
            **self.evaluation.to_dict(),
            "excluded_layers": self.excluded,
            "sensitivity_top": [{"layer": name, "relative_error": float(f"{score:.4g}")}
                                for name, score in self.ranking[:10]],
            **({"ranking": {"layers": self.layers, "ranked": len(self.ranking),
                            "sessions": self.rank_sessions}} if self.rank_sessions is not None else {}),
            "steps": self.steps,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def run_accuracy_guard(
    *,
    budget: float,
    min_agreement: float = 0.0,
    quantize: Callable[[list[str]], Path],
    evaluate: Callable[[Path], Evaluation],
    rank: Callable[[Path], Ranking | list[tuple[str, float]]],
    on_step: Callable[[dict[str, Any]], None] | None = None,
    predict: Callable[[list[str], Evaluation], bool] | None = None,
) -> GuardResult:
    """Quantize, evaluate, and exclude the most sensitive layers until the accuracy target holds.

    Args:
        budget: maximum mIoU drop in points.
        min_agreement: minimum pixel agreement with the FP32 reference, percent. Defaults to 0
            (mIoU budget only).
        quantize: ``quantize(excluded_layers) -> path`` of the written INT8 graph.
        evaluate: ``evaluate(path) -> Evaluation``.
        rank: ``rank(path_of_fully_quantized_graph)``: a :class:`Ranking` (scored as far as the
            steps need) or a complete ``[(layer, score)]`` list, most sensitive first.
        on_step: called with each step's record (for progress display).
        predict: ``predict(excluded, first_evaluation)``: a cheap guess whether excluding these
            layers meets the target, given the fully quantized graph's evaluation. It only picks
            the step the search starts from; every verdict is still a real evaluation. Defaults
            to None (start at the first step).

    Returns:
        A :class:`GuardResult`; the last graph ``quantize`` wrote is the one that passed.

    Raises:
        AccuracyGateError: the target is not met even with every INT8 layer excluded.
    """
    if budget < 0:
        raise EdgesegError(f"--max-miou-drop must be >= 0, got {budget}")
    if not 0.0 <= min_agreement <= 100.0:
        raise EdgesegError(f"--min-agreement must be a percentage in [0, 100], got {min_agreement}")
    steps: list[dict[str, Any]] = []
    seconds = {"quantize": 0.0, "evaluate": 0.0, "rank": 0.0, **({"predict": 0.0} if predict else {})}
    seen: dict[str, tuple[int, Evaluation]] = {}  # graph digest → (layers excluded, its evaluation)

    def timed(what: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            seconds[what] += time.perf_counter() - start

    def attempt(excluded: list[str]) -> tuple[Path, Evaluation]:
        path = timed("quantize", quantize, excluded)
        digest = _digest(path)
        if digest is not None and digest in seen:
            k, evaluation = seen[digest]
            same = {"same_graph_as": k}
        else:
            evaluation, same = timed("evaluate", evaluate, path), {}
            if digest is not None:
                seen[digest] = (len(excluded), evaluation)
        record = {"excluded": len(excluded), **evaluation.to_dict(), **same}
        steps.append(record)
        if on_step:
            on_step(record)
        return path, evaluation

    def holds(e: Evaluation) -> bool:
        return e.drop <= budget and e.pixel_agreement >= min_agreement

    def result(evaluation: Evaluation, excluded: list[str], ranking: Ranking | None) -> GuardResult:
        return GuardResult(budget, evaluation, min_agreement, excluded=excluded,
                           ranking=ranking.ranked if ranking is not None else [],
                           layers=len(ranking) if ranking is not None else 0,
                           rank_sessions=getattr(ranking, "sessions", None), steps=steps, seconds=seconds)

    path, evaluation = attempt([])
    if holds(evaluation):
        return result(evaluation, [], None)
    first = evaluation
    ranked = timed("rank", rank, path)
    ranking: Ranking = _ListRanking(ranked) if isinstance(ranked, list) else ranked
    schedule = exclusion_schedule(len(ranking))

    def top(i: int) -> list[str]:
        # Scoring the layers a step needs is ranking time, whenever it happens.
        return [name for name, _ in timed("rank", ranking.top, schedule[i])]

    # Where to start: the first step predicted to hold. The search below then returns the step the
    # plain upward walk would (assuming a step that holds is followed by steps that hold), from
    # fewer re-quantizations: the step below the prediction, then up or down from there.
    start = 0
    if predict is not None:
        # Predictions stop at a quarter of the layers: further steps would rank nearly every layer.
        while (start < len(schedule) - 1 and schedule[start] <= len(ranking) / 4
               and not timed("predict", predict, top(start), first)):
            start += 1
    i = start - 1 if start > 0 else 0
    excluded = top(i)
    path, evaluation = attempt(excluded)
    if holds(evaluation) and i > 0:
        passed = i  # predicted too late: walk down while the steps hold
        while passed > 0:
            below = top(passed - 1)
            path, evaluation = attempt(below)
            if not holds(evaluation):
                break
            passed -= 1
        excluded = top(passed)
        if excluded != below or not holds(evaluation):
            path, evaluation = attempt(excluded)  # the graph written last must be the one kept
        return result(evaluation, excluded, ranking)
    while not holds(evaluation) and i < len(schedule) - 1:
        i += 1
        excluded = top(i)
        path, evaluation = attempt(excluded)
    if holds(evaluation):
        return result(evaluation, excluded, ranking)
    raise AccuracyGateError(
        f"INT8 graph misses its target even with all {len(ranking)} INT8 layers excluded: mIoU drop "
        f"{against(evaluation.drop, budget)} (allowed ≤ {budget}), pixel agreement "
        f"{against(evaluation.pixel_agreement, min_agreement)}% (needed ≥ {min_agreement}%"
        f"{'; stopped early, out of reach' if evaluation.stopped_early else ''}); "
        "use --precision fp16 or relax --max-miou-drop / --min-agreement")


def _digest(path: Path) -> str | None:
    """sha256 of the graph file, or None when ``quantize`` wrote none there (test doubles)."""
    from edgeseg._io import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return None
