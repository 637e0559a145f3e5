"""Accuracy guard: keep the most quantization-sensitive layers out of INT8 until mIoU holds.

After quantizing, the INT8 graph (ONNX Runtime, CPU, graph optimizations disabled) is evaluated on
a labelled validation set against the PyTorch FP32 model. If its mIoU drop exceeds the budget,
layers are ranked by sensitivity and excluded from INT8, most sensitive first, re-quantizing with
the cached scales (no recalibration) until the drop is within budget.

Sensitivity measure (one FP32 pass over a few validation images, no extra quantization runs): for
each INT8 layer, the relative quantization noise it receives,

    noise(layer) = Σ_inputs mean_c ‖x_c − qdq(x_c)‖² / ‖x_c‖²  (activations, per-tensor scale amax/127)
                 + mean_k ‖w_k − qdq(w_k)‖² / ‖w_k‖²          (weights, per-output-channel scales)

i.e. the inverse signal-to-quantization-noise ratio at its inputs, averaged over channels ``c``
(and output channels ``k``). Averaging per channel matters: with one per-tensor scale, a channel
of huge values sets the scale and the small channels round to zero; a ratio over the whole tensor
would be dominated by the big channel and miss that. It is local (each layer sees
exact FP32 inputs), so it does not blame a layer for noise made upstream, and it costs one
forward pass where "exclude one layer at a time and re-evaluate" would cost one quantization plus
one evaluation per layer (dozens of minutes on a CPU for a ResNet). Its blind spot: a layer whose
noise is large but harmless downstream ranks high anyway; the loop then simply excludes one layer
more than strictly needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = [
    "Evaluation",
    "GuardResult",
    "ReferenceEvaluator",
    "layer_sensitivity",
    "run_accuracy_guard",
    "exclusion_schedule",
]

_QMAX = 127.0

Progress = Callable[[int, int], None]


@dataclass
class Evaluation:
    """Accuracy of one deployed graph against the FP32 reference.

    Args:
        miou: mIoU of the graph on the validation labels (percent).
        reference_miou: mIoU of the PyTorch FP32 model on the same images (percent).
        pixel_agreement: share of pixels whose class equals the reference's (percent).
        images: number of validation images evaluated.
    """

    miou: float
    reference_miou: float
    pixel_agreement: float
    images: int

    @property
    def drop(self) -> float:
        """mIoU points lost against the FP32 reference (negative when INT8 happens to score higher)."""
        return self.reference_miou - self.miou

    def to_dict(self) -> dict[str, Any]:
        return {"miou": round(self.miou, 4), "reference_miou": round(self.reference_miou, 4),
                "miou_drop": round(self.drop, 4), "pixel_agreement": round(self.pixel_agreement, 4),
                "images": self.images}


def _predict(onnx_path: str | os.PathLike[str], images: np.ndarray, progress: Progress | None) -> np.ndarray:
    """Class map of every image from an ONNX graph (``logits`` → argmax, or ``labels`` as is)."""
    from edgeseg.export.onnx_export import INPUT_NAME
    from edgeseg.runners.onnxrt import OnnxrtRunner

    preds = []
    with OnnxrtRunner(onnx_path, graph_optimization="disabled") as runner:
        dim = runner.get_input_metadata()[0].shape[0]
        batch = dim if isinstance(dim, int) else 1
        steps = len(images) // batch
        for step in range(steps):
            out = next(iter(runner.infer({INPUT_NAME: images[step * batch:(step + 1) * batch]}).values()))
            preds.append(out if out.ndim == 3 else out.argmax(axis=1))
            if progress:
                progress(step + 1, steps)
    if not preds:
        raise EdgesegError(f"{onnx_path}: needs at least {batch} validation images (its batch), "
                           f"got {len(images)}")
    return np.concatenate(preds).astype(np.int64)


def _miou(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> float:
    from edgeseg.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    cm.update(pred, target)
    return float(cm.compute().miou)


class ReferenceEvaluator:
    """Scores deployed graphs against the PyTorch FP32 model on one labelled validation set.

    The reference predictions are computed once; each :meth:`evaluate` runs only the graph.

    Args:
        images: float32 ``(N, 3, H, W)`` preprocessed validation images.
        masks: int64 ``(N, H, W)`` labels.
        reference: int64 ``(N, H, W)`` class maps of the FP32 model.
        num_classes: number of classes.
        ignore_index: label excluded from mIoU. Defaults to 255.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, reference: np.ndarray, num_classes: int,
                 ignore_index: int = 255) -> None:
        self.images, self.masks, self.reference = images, masks, reference
        self.num_classes, self.ignore_index = num_classes, ignore_index

    @classmethod
    def from_torch(cls, model: Any, images: np.ndarray, masks: np.ndarray, num_classes: int, *,
                   ignore_index: int = 255, batch_size: int = 8,
                   progress: Progress | None = None) -> ReferenceEvaluator:
        """Run the FP32 PyTorch ``model`` once over the validation images."""
        from edgeseg.runners.torch import TorchRunner

        preds = []
        with TorchRunner(model) as runner:
            for start in range(0, len(images), batch_size):
                logits = runner.infer({"images": images[start:start + batch_size]})["logits"]
                preds.append(logits.argmax(axis=1))
                if progress:
                    progress(min(start + batch_size, len(images)), len(images))
        return cls(images, masks, np.concatenate(preds).astype(np.int64), num_classes, ignore_index)

    def evaluate(self, onnx_path: str | os.PathLike[str], progress: Progress | None = None) -> Evaluation:
        """mIoU and pixel agreement of the graph at ``onnx_path`` against the reference."""
        from edgeseg.metrics import pixel_agreement

        pred = _predict(onnx_path, self.images, progress)
        n = len(pred)
        target, reference = self.masks[:n], self.reference[:n]
        return Evaluation(
            miou=_miou(pred, target, self.num_classes, self.ignore_index),
            reference_miou=_miou(reference, target, self.num_classes, self.ignore_index),
            pixel_agreement=float(pixel_agreement(pred, reference)),
            images=n,
        )


def _qdq_noise(x: np.ndarray, scale: np.ndarray | float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``‖x − qdq(x)‖²`` and ``‖x‖²`` (channels along ``axis``) for symmetric INT8."""
    q = np.clip(np.round(x / scale), -_QMAX, _QMAX) * scale
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    error = ((x - q).astype(np.float64) ** 2).sum(axis=reduce)
    return error, (x.astype(np.float64) ** 2).sum(axis=reduce)


def _relative(noise: np.ndarray, signal: np.ndarray) -> float:
    """Mean over channels of noise / signal, skipping all-zero channels."""
    live = signal > 0
    return float(np.mean(noise[live] / signal[live])) if live.any() else 0.0


def _weight_noise(w: np.ndarray) -> float:
    """Relative noise of per-output-channel (axis 0) symmetric INT8 weights."""
    flat = w.reshape(w.shape[0], -1).astype(np.float32)
    scale = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-12) / _QMAX
    return _relative(*_qdq_noise(flat, scale, axis=0))


def layer_sensitivity(
    fp32_onnx: str | os.PathLike[str],
    int8_onnx: str | os.PathLike[str],
    amax: dict[str, float],
    images: np.ndarray,
) -> list[tuple[str, float]]:
    """Rank the INT8 layers of ``int8_onnx`` by the quantization noise at their inputs.

    Args:
        fp32_onnx: the FP32 graph the INT8 one was made from (same node names).
        int8_onnx: the quantized graph (decides which layers are INT8).
        amax: activation ranges used for its scales (after concat sharing).
        images: a few preprocessed images for the activation statistics.

    Returns:
        ``[(node name, relative noise)]``, most sensitive first.
    """
    from onnx import numpy_helper

    from edgeseg.export._graph import GraphIndex
    from edgeseg.export.onnx_export import load_onnx
    from edgeseg.precision.int8 import quantized_nodes
    from edgeseg.precision.ranges import iter_activations

    fp32 = load_onnx(fp32_onnx)
    graph = GraphIndex(fp32)
    nodes = {n.name: n for n in fp32.graph.node}
    candidates = [name for name in quantized_nodes(load_onnx(int8_onnx)) if name in nodes]
    inputs = {name: [t for t in nodes[name].input if t in amax and not graph.is_constant(t)]
              for name in candidates}
    needed = sorted({t for ts in inputs.values() for t in ts})
    noise: dict[str, Any] = dict.fromkeys(needed, 0.0)
    signal: dict[str, Any] = dict.fromkeys(needed, 0.0)
    for values in iter_activations(fp32_onnx, images, needed):
        for name, value in values.items():
            # Channels on axis 1 for feature maps; a vector counts as one channel.
            n, s = _qdq_noise(value.astype(np.float32), amax[name] / _QMAX, axis=1 if value.ndim > 1 else 0)
            noise[name] = noise[name] + n
            signal[name] = signal[name] + s
    scores = []
    for name in candidates:
        score = sum(_relative(np.atleast_1d(noise[t]), np.atleast_1d(signal[t])) for t in inputs[name])
        node = nodes[name]
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and len(node.input) > 1:
            weight = node.input[1]
            if weight in graph.initializers:
                score += _weight_noise(numpy_helper.to_array(graph.initializers[weight]))
        scores.append((name, score))
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
        excluded: layers kept out of INT8, most sensitive first.
        ranking: ``(layer, relative noise)`` for the most sensitive layers (when ranked).
        steps: every attempt: ``{"excluded": k, "miou_drop": ..., "pixel_agreement": ...}``.
    """

    budget: float
    evaluation: Evaluation
    excluded: list[str] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_miou_drop": self.budget,
            **self.evaluation.to_dict(),
            "excluded_layers": self.excluded,
            "sensitivity_top": [{"layer": name, "relative_noise": float(f"{score:.4g}")}
                                for name, score in self.ranking[:10]],
            "steps": self.steps,
        }


def run_accuracy_guard(
    *,
    budget: float,
    quantize: Callable[[list[str]], Path],
    evaluate: Callable[[Path], Evaluation],
    rank: Callable[[Path], list[tuple[str, float]]],
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> GuardResult:
    """Quantize, evaluate, and exclude the most sensitive layers until the drop is within budget.

    Args:
        budget: maximum mIoU drop in points.
        quantize: ``quantize(excluded_layers) -> path`` of the written INT8 graph.
        evaluate: ``evaluate(path) -> Evaluation``.
        rank: ``rank(path_of_fully_quantized_graph) -> [(layer, score)]``, most sensitive first.
        on_step: called with each step's record (for progress display).

    Returns:
        A :class:`GuardResult`; the last graph ``quantize`` wrote is the one that passed.

    Raises:
        EdgesegError: the budget is not met even with every INT8 layer excluded.
    """
    if budget < 0:
        raise EdgesegError(f"--max-miou-drop must be >= 0, got {budget}")
    steps: list[dict[str, Any]] = []

    def attempt(excluded: list[str]) -> tuple[Path, Evaluation]:
        path = quantize(excluded)
        evaluation = evaluate(path)
        record = {"excluded": len(excluded), **evaluation.to_dict()}
        steps.append(record)
        if on_step:
            on_step(record)
        return path, evaluation

    path, evaluation = attempt([])
    if evaluation.drop <= budget:
        return GuardResult(budget, evaluation, steps=steps)
    ranking = rank(path)
    for k in exclusion_schedule(len(ranking)):
        excluded = [name for name, _ in ranking[:k]]
        path, evaluation = attempt(excluded)
        if evaluation.drop <= budget:
            return GuardResult(budget, evaluation, excluded=excluded, ranking=ranking, steps=steps)
    raise EdgesegError(
        f"INT8 mIoU drop {evaluation.drop:.2f} points exceeds --max-miou-drop {budget} even with all "
        f"{len(ranking)} INT8 layers excluded; use --precision fp16 or raise the budget")
