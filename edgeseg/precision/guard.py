"""Accuracy guard: keep the most quantization-sensitive layers out of INT8 until accuracy holds.

After quantizing, the INT8 graph (ONNX Runtime, CPU, graph optimizations disabled) is evaluated on
a labelled validation set against the PyTorch FP32 model. If its mIoU drop exceeds the budget, or
its pixel agreement with the FP32 model is below the validation gate, layers are ranked by
sensitivity and excluded from INT8, most sensitive first, re-quantizing with the cached scales (no
recalibration) until both hold. Agreement is part of the target because it is the steadier signal:
on a few dozen images a mIoU difference of a few tenths of a point is noise, while a drop in
agreement is measured over every pixel.

Sensitivity measure — each INT8 layer alone, end to end: starting from the INT8 graph itself,
every Q/DQ pair is bypassed except those feeding one layer, and the graph's output on a few
validation images is compared with the output of the graph with every pair bypassed:

    sensitivity(layer) = mean((logits_layer_only − logits_none)²) / var(logits_none)

This is "quantize one layer at a time" without re-quantizing: modelopt's placement and our cached
scales are reused as they are, so each layer costs one ONNX Runtime session on two images (about
0.2 s for the demo model on a loaded 2-core CPU) instead of a quantization and a full evaluation. It
measures what a layer's quantization does to the *output* (a local signal-to-noise ratio missed
that: a noisy layer whose error the network absorbs ranked high, a classifier whose small noise
flips pixels ranked low; on the demo model the end-to-end ranking reached the budget with half the
exclusions). Both the reference and the variants run in the graph's own high-precision dtype, so
FP16 rounding is not mistaken for INT8 sensitivity. Interactions between layers are ignored; the
loop re-evaluates the real graph after every exclusion step, so they only cost extra steps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import AccuracyGateError, EdgesegError
from edgeseg.metrics import against

__all__ = [
    "Evaluation",
    "GuardResult",
    "ReferenceEvaluator",
    "layer_sensitivity",
    "run_accuracy_guard",
    "exclusion_schedule",
]

Progress = Callable[[int, int], None]


@dataclass
class Evaluation:
    """Accuracy of one deployed graph against the FP32 reference.

    Args:
        miou: mIoU of the graph on the validation labels (percent).
        reference_miou: mIoU of the PyTorch FP32 model on the same images (percent).
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
    (ONNX Runtime, graph optimizations disabled) and compares the two with
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
        # Order of evaluation: the images the last complete evaluation got most wrong come first, so
        # a failing graph shows it after few images (see ``stop_below`` in :meth:`evaluate`).
        self._order = np.arange(len(images))

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
        if not stopped:
            self._order = np.array(done)[np.argsort(-np.array(wrong), kind="stable")]
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


def _bypass_qdq(model: Any, keep: str | None) -> Any:
    """A copy of a Q/DQ graph in which only the inputs of node ``keep`` stay quantized.

    Every other consumer of a ``DequantizeLinear(QuantizeLinear(x))`` output reads ``x`` directly,
    and the pairs no node reads any more are removed: ONNX Runtime would still run them, and on an
    FP16 graph (casts around every Q/DQ on the CPU) they cost as much as the rest of the graph.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    producer = {o: n for n in out.graph.node for o in n.output}
    for node in out.graph.node:
        if node.name == keep:
            continue
        for i, tensor in enumerate(node.input):
            dq = producer.get(tensor)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    qdq = ("QuantizeLinear", "DequantizeLinear")
    while True:  # a DQ first, then the Q that fed only it
        read = {t for n in out.graph.node for t in n.input} | {o.name for o in out.graph.output}
        kept = [n for n in out.graph.node if n.op_type not in qdq or any(o in read for o in n.output)]
        if len(kept) == len(out.graph.node):
            return out
        del out.graph.node[:]
        out.graph.node.extend(kept)


def _run_graph(model: Any, images: np.ndarray) -> np.ndarray:
    """The primary output of ``model`` (float64) for every image, graph optimizations disabled."""
    from edgeseg.compare import infer
    from edgeseg.runners.onnxrt import OnnxrtRunner

    with OnnxrtRunner(model.SerializeToString(), graph_optimization="disabled", name="sensitivity") as runner:
        return infer(runner, images).astype(np.float64)


def layer_sensitivity(int8_onnx: str | os.PathLike[str], images: np.ndarray,
                      progress: Progress | None = None) -> list[tuple[str, float]]:
    """Rank the INT8 layers of a Q/DQ graph by what quantizing each one alone does to the output.

    Args:
        int8_onnx: the quantized graph (static batch 1, logits output).
        images: a few preprocessed images (two are enough to rank).
        progress: called as ``progress(done, total)`` after each layer.

    Returns:
        ``[(node name, relative output error)]``, most sensitive first.
    """
    from edgeseg.export.onnx_export import load_onnx
    from edgeseg.precision.int8 import quantized_nodes

    model = load_onnx(int8_onnx)
    layers = quantized_nodes(model)
    reference = _run_graph(_bypass_qdq(model, keep=None), images)
    scale = float(reference.var()) or 1.0
    scores = []
    for i, layer in enumerate(layers):
        out = _run_graph(_bypass_qdq(model, keep=layer), images)
        scores.append((layer, float(np.mean((out - reference) ** 2)) / scale))
        if progress:
            progress(i + 1, len(layers))
    return sorted(scores, key=lambda item: item[1], reverse=True)


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
        ranking: ``(layer, relative output error)`` of every INT8 layer, most sensitive first
            (when ranked).
        steps: every attempt: ``{"excluded": k, "miou_drop": ..., "pixel_agreement": ...}``.
        seconds: wall time spent quantizing, evaluating and ranking (what the guard costs).
    """

    budget: float
    evaluation: Evaluation
    min_agreement: float = 0.0
    excluded: list[str] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)
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
            "steps": self.steps,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def run_accuracy_guard(
    *,
    budget: float,
    min_agreement: float = 0.0,
    quantize: Callable[[list[str]], Path],
    evaluate: Callable[[Path], Evaluation],
    rank: Callable[[Path], list[tuple[str, float]]],
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> GuardResult:
    """Quantize, evaluate, and exclude the most sensitive layers until the accuracy target holds.

    Args:
        budget: maximum mIoU drop in points.
        min_agreement: minimum pixel agreement with the FP32 reference, percent. Defaults to 0
            (mIoU budget only).
        quantize: ``quantize(excluded_layers) -> path`` of the written INT8 graph.
        evaluate: ``evaluate(path) -> Evaluation``.
        rank: ``rank(path_of_fully_quantized_graph) -> [(layer, score)]``, most sensitive first.
        on_step: called with each step's record (for progress display).

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
    seconds = {"quantize": 0.0, "evaluate": 0.0, "rank": 0.0}

    def timed(what: str, fn: Callable[[Any], Any], arg: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(arg)
        finally:
            seconds[what] += time.perf_counter() - start

    def attempt(excluded: list[str]) -> tuple[Path, Evaluation]:
        path = timed("quantize", quantize, excluded)
        evaluation = timed("evaluate", evaluate, path)
        record = {"excluded": len(excluded), **evaluation.to_dict()}
        steps.append(record)
        if on_step:
            on_step(record)
        return path, evaluation

    def holds(e: Evaluation) -> bool:
        return e.drop <= budget and e.pixel_agreement >= min_agreement

    path, evaluation = attempt([])
    if holds(evaluation):
        return GuardResult(budget, evaluation, min_agreement, steps=steps, seconds=seconds)
    ranking = timed("rank", rank, path)
    for k in exclusion_schedule(len(ranking)):
        excluded = [name for name, _ in ranking[:k]]
        path, evaluation = attempt(excluded)
        if holds(evaluation):
            return GuardResult(budget, evaluation, min_agreement, excluded=excluded, ranking=ranking,
                               steps=steps, seconds=seconds)
    raise AccuracyGateError(
        f"INT8 graph misses its target even with all {len(ranking)} INT8 layers excluded: mIoU drop "
        f"{against(evaluation.drop, budget)} (allowed ≤ {budget}), pixel agreement "
        f"{against(evaluation.pixel_agreement, min_agreement)}% (needed ≥ {min_agreement}%"
        f"{'; stopped early, out of reach' if evaluation.stopped_early else ''}); "
        "use --precision fp16 or relax --max-miou-drop / --min-agreement")
