"""Activation ranges for INT8 calibration: ``max``, ``percentile`` and ``entropy``.

The collector runs the FP32 graph in ONNX Runtime (graph optimizations disabled, so every tensor
keeps its name) with every float activation exposed as an output, and reduces each tensor to one
number, its *amax*: the symmetric clipping range of its INT8 quantization (scale = amax / 127).

* ``max`` — the largest ``|x|`` seen. No clipping; one outlier widens the range for all values.
* ``percentile`` — the ``p``-th percentile of ``|x|`` (default 99.99) from a histogram.
* ``entropy`` — TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC
  2017): from a 2048-bin histogram of ``|x|``, pick the threshold whose 128-level quantized
  distribution has the smallest KL divergence from the clipped reference distribution.

Every tensor is calibrated, whatever the later Q/DQ placement does with it, so one calibration
serves every set of excluded layers (the accuracy guard re-quantizes without recalibrating).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = [
    "CALIBRATION_METHODS",
    "RangeCollector",
    "activation_tensors",
    "collect_ranges",
    "entropy_amax",
    "iter_activations",
]

CALIBRATION_METHODS = ("max", "entropy", "percentile")
#: Percentile used by the ``percentile`` method.
DEFAULT_PERCENTILE = 99.99
_NUM_BINS = 2048
_NUM_LEVELS = 128  # positive INT8 levels the reference distribution is squeezed into
# A range of exactly 0 (a dead ReLU) would give scale 0, which Q/DQ cannot express.
_MIN_AMAX = 1e-5


def _hist_percentile(hist: np.ndarray, width: float, percentile: float) -> float:
    cdf = np.cumsum(hist, dtype=np.float64)
    if cdf[-1] == 0:
        return 0.0
    index = int(np.searchsorted(cdf, cdf[-1] * percentile / 100.0))
    return (index + 1) * width


def _kl_for_threshold(hist: np.ndarray, i: int) -> float:
    """KL(P || Q) when clipping the histogram at bin ``i`` and quantizing to 128 levels."""
    reference = hist[:i].astype(np.float64)
    reference[i - 1] += hist[i:].sum()  # outliers are clipped into the last kept bin
    kept = hist[:i].astype(np.float64)
    chunk = (np.arange(i) * _NUM_LEVELS) // i
    sums = np.bincount(chunk, weights=kept, minlength=_NUM_LEVELS)
    nonzero = np.bincount(chunk, weights=(kept > 0).astype(np.float64), minlength=_NUM_LEVELS)
    # Each level's mass is spread evenly over the bins of its chunk that were non-empty.
    expanded = np.where(kept > 0, sums[chunk] / np.maximum(nonzero[chunk], 1), 0.0)
    p_total, q_total = reference.sum(), expanded.sum()
    if p_total == 0 or q_total == 0:
        return float("inf")
    p, q = reference / p_total, expanded / q_total
    mask = p > 0
    # Bins with p > 0 but q == 0 get a tiny q instead of an infinite divergence.
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def entropy_amax(hist: np.ndarray, width: float) -> float:
    """The entropy-calibration threshold for a histogram of ``|x|`` with bins of ``width``.

    Candidates are searched every 16 bins, then bin by bin around the best coarse candidate,
    which finds the same minimum as a full scan on smooth histograms at a tenth of the cost.
    """
    n = len(hist)
    if hist.sum() == 0:
        return 0.0
    # The first bin holds the exact zeros of ReLU outputs (often half the tensor). Left as is, that
    # spike dominates the divergence and drives the threshold to the smallest candidate; like
    # NVIDIA's pytorch-quantization, count it as its neighbour does.
    hist = hist.copy()
    hist[0] = hist[1]
    coarse = range(_NUM_LEVELS, n + 1, 16)
    best = min(coarse, key=lambda i: _kl_for_threshold(hist, i))
    fine = range(max(_NUM_LEVELS, best - 15), min(n, best + 15) + 1)
    best = min(fine, key=lambda i: _kl_for_threshold(hist, i))
    return (best + 0.5) * width


class RangeCollector:
    """Accumulates ``|x|`` statistics per tensor over calibration batches.

    Args:
        method: ``"max"``, ``"percentile"`` or ``"entropy"``.
        percentile: percentile of ``|x|`` for ``"percentile"``. Defaults to 99.99.
    """

    def __init__(self, method: str, *, percentile: float = DEFAULT_PERCENTILE) -> None:
        if method not in CALIBRATION_METHODS:
            raise EdgesegError(f"calibration method must be one of {list(CALIBRATION_METHODS)}, "
                               f"got {method!r}")
        if not 0 < percentile <= 100:
            raise EdgesegError(f"percentile must be in (0, 100], got {percentile}")
        self.method = method
        self.percentile = percentile
        self._max: dict[str, float] = {}
        self._hist: dict[str, np.ndarray] = {}
        self._top: dict[str, float] = {}  # upper edge of each tensor's histogram

    def update(self, name: str, values: np.ndarray) -> None:
        """Add one batch of values of tensor ``name``."""
        magnitude = np.abs(np.asarray(values, dtype=np.float32)).ravel()
        peak = float(magnitude.max()) if magnitude.size else 0.0
        self._max[name] = max(self._max.get(name, 0.0), peak)
        if self.method == "max" or magnitude.size == 0:
            return
        top = self._top.get(name, 0.0)
        if peak > top:
            # Widen the range; the old counts move to the new bins their centres fall into.
            new_top = peak
            hist = np.zeros(_NUM_BINS, dtype=np.int64)
            old = self._hist.get(name)
            if old is not None and top > 0:
                centres = (np.arange(_NUM_BINS) + 0.5) * (top / _NUM_BINS)
                index = np.minimum((centres / new_top * _NUM_BINS).astype(np.int64), _NUM_BINS - 1)
                np.add.at(hist, index, old)
            self._hist[name], self._top[name] = hist, new_top
            top = new_top
        if top > 0:
            self._hist[name] += np.histogram(magnitude, bins=_NUM_BINS, range=(0.0, top))[0]

    def amax(self) -> dict[str, float]:
        """The calibrated range of every tensor seen (never below a tiny positive floor)."""
        out = {}
        for name, peak in self._max.items():
            if self.method == "max" or name not in self._hist:
                value = peak
            else:
                width = self._top[name] / _NUM_BINS
                if self.method == "percentile":
                    value = _hist_percentile(self._hist[name], width, self.percentile)
                else:
                    value = entropy_amax(self._hist[name], width)
                value = min(value, peak)
            out[name] = max(value, _MIN_AMAX)
        return out


def activation_tensors(model: Any) -> list[str]:
    """Names of the float activations of a (shape-inferred) FP32 graph: its input and node outputs.

    Tensors computed only from constants (shape arithmetic) are left out.
    """
    import onnx

    from edgeseg.export._graph import GraphIndex

    graph = GraphIndex(model)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    names = [i.name for i in model.graph.input if i.name not in graph.initializers]
    for node in model.graph.node:
        names.extend(o for o in node.output if o)
    return [n for n in dict.fromkeys(names)
            if graph.elem_type.get(n) in float_types and not graph.is_constant(n)]


def iter_activations(
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    names: list[str] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Run a graph over ``images`` batch by batch, yielding the values of the requested tensors.

    ONNX Runtime runs with graph optimizations disabled so that every tensor keeps its name and
    value. The images are fed in the graph's static batch size; a tail that cannot fill it is
    left out.

    Args:
        onnx_path: the graph.
        images: float32 ``(N, 3, H, W)`` preprocessed images.
        names: tensors to expose. Defaults to :func:`activation_tensors`.
        progress: called as ``progress(done, total)`` after each batch.

    Yields:
        ``{tensor name: value}`` per batch.
    """
    import onnx

    from edgeseg.export.onnx_export import INPUT_NAME, load_onnx
    from edgeseg.runners.onnxrt import OnnxrtRunner

    model = onnx.shape_inference.infer_shapes(load_onnx(onnx_path))
    names = activation_tensors(model) if names is None else names
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else 1
    if len(images) < batch:
        raise EdgesegError(f"{onnx_path}: needs at least {batch} images (the graph's batch), "
                           f"got {len(images)}")
    steps = len(images) // batch
    runner = OnnxrtRunner(model.SerializeToString(), graph_optimization="disabled", name=str(onnx_path))
    with runner:
        for step in range(steps):
            outputs = runner.infer({INPUT_NAME: images[step * batch:(step + 1) * batch]})
            yield {name: outputs[name] for name in names}
            if progress:
                progress(step + 1, steps)


def collect_ranges(
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    method: str,
    *,
    percentile: float = DEFAULT_PERCENTILE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Run the FP32 graph over ``images`` and return the amax of every float activation.

    Args:
        onnx_path: the FP32 (simplified) graph.
        images: float32 ``(N, 3, H, W)`` preprocessed calibration images.
        method: ``"max"``, ``"percentile"`` or ``"entropy"``.
        percentile: for ``"percentile"``. Defaults to 99.99.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        ``{tensor name: amax}``.
    """
    collector = RangeCollector(method, percentile=percentile)
    for values in iter_activations(onnx_path, images, progress=progress):
        for name, value in values.items():
            collector.update(name, value)
    return collector.amax()
