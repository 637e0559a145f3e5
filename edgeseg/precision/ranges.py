"""Activation ranges for INT8 calibration: ``max``, ``percentile`` and ``entropy``.

The collector runs the FP32 graph in ONNX Runtime (graph optimizations disabled, so every tensor
keeps its name) with every float activation exposed as an output, and reduces each tensor to one
number, its *amax*: the symmetric clipping range of its INT8 quantization (scale = amax / 127).
The graph runs in segments that each expose a bounded share of the activations, and each value is
reduced into its statistics and freed at once (:func:`iter_activations`), so memory stays bounded
whatever the image size; the statistics are the same as from exposing everything at once.

* ``max`` — the largest ``|x|`` seen. No clipping; one outlier widens the range for all values.
* ``percentile`` — the ``p``-th percentile of ``|x|`` (default 99.99) from a histogram.
* ``entropy`` — TensorRT's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC
  2017): from a 2048-bin histogram of ``|x|``, pick the threshold whose 128-level quantized
  distribution has the smallest KL divergence from the clipped reference distribution.

Every tensor is calibrated, whatever the later Q/DQ placement does with it, so one calibration
serves every set of excluded layers (the accuracy guard re-quantizes without recalibrating).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_SEGMENT_BYTES",
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
        values = np.asarray(values, dtype=np.float32)
        # Two reductions instead of |x| then one: no copy of the tensor (a quarter of the
        # calibration's time at 512x1024 went to allocating |x|).
        peak = max(float(values.max()), -float(values.min())) if values.size else 0.0
        self._max[name] = max(self._max.get(name, 0.0), peak)
        if self.method == "max" or values.size == 0:
            return
        magnitude = np.abs(values).ravel()
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


#: Bytes of activations one graph segment may expose per batch (see :func:`iter_activations`).
DEFAULT_SEGMENT_BYTES = 512 * 2**20


@dataclass
class _Segment:
    """A run of consecutive nodes of the graph, as its own model.

    Args:
        model: the serialized segment.
        inputs: tensors it reads from the graph input or earlier segments.
        exposed: the activations it reports.
        carry: tensors it computes that later segments read.
        release: tensors no segment after this one reads.
    """

    model: bytes
    inputs: list[str]
    exposed: list[str]
    carry: list[str]
    release: list[str]


def _node_reads(node: Any) -> list[str]:
    """Every tensor a node reads, including what its subgraphs (If/Loop bodies) read from outside."""
    import onnx

    reads = [name for name in node.input if name]
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                reads.extend(_node_reads(inner))
    return reads


def _static_bytes(value_info: Any) -> int:
    """Size of one tensor from its inferred shape (a dynamic dimension counts as 1)."""
    import onnx

    tensor_type = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim]
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
    return int(np.prod(dims, dtype=np.int64)) * itemsize


def _plan_segments(model: Any, names: list[str], max_bytes: int) -> list[_Segment]:
    """Cut a (shape-inferred) graph into segments that each expose at most ``max_bytes`` of ``names``.

    A single node whose outputs exceed the budget gets a segment of its own. A cut is only made
    where every tensor crossing it has an inferred type (a segment's inputs must be typed).
    """
    import onnx

    graph = model.graph
    typed = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]
             if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    initializers = {t.name: t for t in graph.initializer}
    nodes = list(graph.node)
    reads = [[r for r in _node_reads(n) if r not in initializers] for n in nodes]
    last_read = {name: i for i, node_reads in enumerate(reads) for name in node_reads}
    wanted = set(names)

    spans: list[tuple[int, int]] = []
    begin, size, live = 0, 0, set[str]()
    for i, node in enumerate(nodes):
        live = {t for t in live if last_read.get(t, -1) >= i}
        cost = sum(_static_bytes(typed[o]) for o in node.output if o in wanted)
        if i > begin and size + cost > max_bytes and all(t in typed for t in live):
            spans.append((begin, i))
            begin, size = i, 0
        size += cost
        live.update(o for o in node.output if o)
    spans.append((begin, len(nodes)))

    segments: list[_Segment] = []
    available = {i.name for i in graph.input if i.name not in initializers}
    for k, (a, b) in enumerate(spans):
        produced = [o for n in nodes[a:b] for o in n.output if o]
        inside = set(produced)
        inputs = list(dict.fromkeys(r for rs in reads[a:b] for r in rs if r not in inside and r in available))
        later = {r for rs in reads[b:] for r in rs}
        exposed = [o for o in produced if o in wanted]
        carry = [o for o in produced if o in later]
        release = [t for t in [*inputs, *carry] if t not in later]
        used = {r for n in nodes[a:b] for r in _node_reads(n)}
        outputs = list(dict.fromkeys([*exposed, *carry]))
        segment_graph = onnx.helper.make_graph(
            nodes[a:b], f"{graph.name}_part{k}",
            inputs=[typed[t] for t in inputs],
            outputs=[typed.get(t) or onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                     for t in outputs],
            initializer=[t for name, t in initializers.items() if name in used])
        segment = onnx.helper.make_model(segment_graph, opset_imports=model.opset_import,
                                         ir_version=model.ir_version)
        segment.functions.extend(model.functions)
        segments.append(_Segment(segment.SerializeToString(), inputs, exposed, carry, release))
        available.update(produced)
    return segments


@functools.cache
def _register_plain_cpu_allocator() -> None:
    """Register a CPU allocator without arena in ONNX Runtime's environment, once per process.

    Each session otherwise grows its own arena to its peak and keeps it: over all the segments of
    a graph that is as much memory as exposing every activation at once. Sessions opt in to this
    shared, arena-less allocator with ``session.use_env_allocators``; no other session uses it.
    """
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_DEVICE_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, None)


def iter_activations(
    model: str | os.PathLike[str] | Any,
    images: np.ndarray,
    names: list[str] | None = None,
    *,
    max_bytes: int = DEFAULT_SEGMENT_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Run a graph over ``images`` batch by batch, yielding the requested tensors one at a time.

    Exposing every activation of a large graph at once needs all of them in memory together (over
    10 GiB for one 1024x2048 image through a ResNet-50), so the graph is cut into consecutive
    segments that each expose at most ``max_bytes`` of the requested tensors per batch. Each batch
    runs through the segments in turn; only the tensors a later segment reads are kept between
    them, and each segment's outputs are handed over and dropped before the next one runs. The
    sessions allocate without arenas (:func:`_register_plain_cpu_allocator`). The time is that of
    one pass; the memory is bounded by the largest segment.

    ONNX Runtime runs with graph optimizations disabled so that every tensor keeps its name and
    value. The images are fed in the graph's static batch size; a tail that cannot fill it is
    left out.

    Args:
        model: the graph: a path, or a loaded ``onnx.ModelProto`` (left unchanged).
        images: float32 ``(N, 3, H, W)`` preprocessed images.
        names: tensors to expose. Defaults to :func:`activation_tensors`.
        max_bytes: bytes of exposed tensors per segment and batch (from the inferred shapes).
            Defaults to :data:`DEFAULT_SEGMENT_BYTES`.
        progress: called as ``progress(done, total)`` after each batch.

    Yields:
        ``(tensor name, value)``, batch by batch; the values of one tensor come in batch order.
    """
    import contextlib

    import onnx

    from edgeseg.export.onnx_export import INPUT_NAME, load_onnx
    from edgeseg.runners.onnxrt import OnnxrtRunner

    if max_bytes <= 0:
        raise EdgesegError(f"max_bytes must be positive, got {max_bytes}")
    label = "<model>" if isinstance(model, onnx.ModelProto) else str(model)
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    model = onnx.shape_inference.infer_shapes(model)  # a copy
    names = activation_tensors(model) if names is None else names
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") else 1
    if len(images) < batch:
        raise EdgesegError(f"{label}: needs at least {batch} images (the graph's batch), "
                           f"got {len(images)}")
    steps = len(images) // batch
    segments = _plan_segments(model, names, max_bytes)
    del model  # the segments hold their own copies of the weights
    _register_plain_cpu_allocator()
    runners = [OnnxrtRunner(s.model, graph_optimization="disabled", name=f"{label} (part {k + 1})",
                            session_config={"session.use_env_allocators": "1"})
               for k, s in enumerate(segments)]
    with contextlib.ExitStack() as stack:
        for runner in runners:
            stack.enter_context(runner)
        for step in range(steps):
            live = {INPUT_NAME: images[step * batch:(step + 1) * batch]}
            if INPUT_NAME in names:
                yield INPUT_NAME, live[INPUT_NAME]
            for segment, runner in zip(segments, runners, strict=True):
                outputs = runner.infer({t: live[t] for t in segment.inputs})
                live.update((t, outputs[t]) for t in segment.carry)
                for t in segment.release:
                    live.pop(t, None)
                for t in segment.exposed:
                    yield t, outputs.pop(t)
                del outputs
            if progress:
                progress(step + 1, steps)


def collect_ranges(
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    method: str,
    *,
    percentile: float = DEFAULT_PERCENTILE,
    max_bytes: int = DEFAULT_SEGMENT_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Run the FP32 graph over ``images`` and return the amax of every float activation.

    Args:
        onnx_path: the FP32 (simplified) graph.
        images: float32 ``(N, 3, H, W)`` preprocessed calibration images.
        method: ``"max"``, ``"percentile"`` or ``"entropy"``.
        percentile: for ``"percentile"``. Defaults to 99.99.
        max_bytes: activation bytes exposed at once (see :func:`iter_activations`); bounds the
            memory, not the result. Defaults to :data:`DEFAULT_SEGMENT_BYTES`.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        ``{tensor name: amax}``.
    """
    collector = RangeCollector(method, percentile=percentile)
    for name, value in iter_activations(onnx_path, images, max_bytes=max_bytes, progress=progress):
        collector.update(name, value)
        del value  # free it before the generator computes the next segment
    return collector.amax()
