"""Which INT8 layers hurt the output most: end-to-end sensitivity, ranked with few graph runs.

Sensitivity of a set of layers: starting from the INT8 graph itself, every Q/DQ pair is bypassed
except those feeding the set's layers, and the graph's output on a few validation images is
compared with the output of the graph with every pair bypassed:

    sensitivity(set) = mean((logits_set_only − logits_none)²) / var(logits_none)

modelopt's placement and our cached scales are reused as they are (no re-quantization). It
measures what quantization does to the *output* (a local signal-to-noise ratio missed that: a
noisy layer whose error the network absorbs ranked high, a classifier whose small noise flips
pixels ranked low). Both the reference and the variants run in the graph's own high-precision
dtype, so FP16 rounding is not mistaken for INT8 sensitivity.

Each graph run is one ONNX Runtime session, and creating it costs about three times running two
small images through it, so the guard does not score every layer alone. Quantization errors of
different layers are nearly independent, so a group's score is close to the sum of its members'
and at least the largest of them. :class:`SensitivityRanking` therefore scores contiguous groups
of layers first and splits, best first, only the group with the highest score; a single layer
reaches the ranking when its own score beats every group still unsplit. The guard asks for as
many layers as its exclusion step needs, so most groups are never split.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Collection

import numpy as np

from edgeseg.build_folder import Precision

__all__ = ["SensitivityRanking", "bypass_qdq"]

Progress = Callable[[int, int], None]

#: Layers per group in the first scoring pass (about a tenth of the demo's 76 INT8 layers).
GROUP_SIZE = 8


def bypass_qdq(model: object, keep: Collection[str] = ()) -> object:
    """A copy of a Q/DQ graph in which only the inputs of the nodes in ``keep`` stay quantized.

    Every other consumer of a ``DequantizeLinear(QuantizeLinear(x))`` output reads ``x`` directly,
    and the pairs no node reads any more are removed: ONNX Runtime would still run them, and on an
    FP16 graph (casts around every Q/DQ on the CPU) they cost as much as the rest of the graph.
    Their scales and zero points go too (ONNX Runtime logs a warning for each unused initializer).
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)  # type: ignore[arg-type]
    keep = set(keep)
    producer = {o: n for n in out.graph.node for o in n.output}
    for node in out.graph.node:
        if node.name in keep:
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
            used = [i for i in out.graph.initializer if i.name in read]
            del out.graph.initializer[:]
            out.graph.initializer.extend(used)
            return out
        del out.graph.node[:]
        out.graph.node.extend(kept)


def _run_graph(model: object, images: np.ndarray) -> np.ndarray:
    """The primary output of ``model`` (float64) for every image, run as the guard judges INT8 graphs."""
    from edgeseg.compare import infer
    from edgeseg.runners.loader import onnx_runner

    data = model.SerializeToString()  # type: ignore[attr-defined]
    with onnx_runner(data, Precision.INT8, name="sensitivity") as runner:
        return infer(runner, images).astype(np.float64)


class SensitivityRanking:
    """The INT8 layers of a Q/DQ graph, most sensitive first, scored lazily (see the module doc).

    Args:
        int8_onnx: the quantized graph (static batch 1, logits output).
        images: a few preprocessed images (two are enough to rank).
        group_size: layers per group in the first pass. Defaults to :data:`GROUP_SIZE`; 1 scores
            every layer alone.
        progress: called as ``progress(graphs run, layers)`` after each graph run.

    Attributes:
        layers: every INT8 layer, in graph order.
        sessions: graph runs so far (one ONNX Runtime session each, the reference included).
    """

    def __init__(self, int8_onnx: str | os.PathLike[str], images: np.ndarray, *, group_size: int = GROUP_SIZE,
                 progress: Progress | None = None) -> None:
        from edgeseg.export.onnx_export import load_onnx
        from edgeseg.precision.int8 import quantized_nodes

        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self._model, self._images, self._progress = load_onnx(int8_onnx), images, progress
        self.layers: list[str] = quantized_nodes(self._model)
        self.sessions = 0
        self._reference = self._output(())
        self._scale = float(self._reference.var()) or 1.0
        self._ranked: list[tuple[str, float]] = []
        self._macs: dict[str, int] = {}
        # Max-heap of (−score, graph position of the first member, members): the position breaks ties.
        self._heap: list[tuple[float, int, list[str]]] = []
        for start in range(0, len(self.layers), group_size):
            self._push(start, self.layers[start:start + group_size])

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def ranked(self) -> list[tuple[str, float]]:
        """``[(layer, relative output error)]`` of the layers ranked so far, most sensitive first."""
        return list(self._ranked)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most sensitive layers (fewer when the graph has fewer), scoring what that needs."""
        while len(self._ranked) < k and self._heap:
            neg, start, members = heapq.heappop(self._heap)
            if len(members) == 1:
                self._ranked.append((members[0], -neg))
                continue
            half = len(members) // 2
            self._push(start, members[:half])
            self._push(start + half, members[half:])
        return self._ranked[:k]

    def wrong_pixels(self, excluded: Collection[str], images: np.ndarray, reference: np.ndarray, *,
                     stop_above: float = np.inf) -> int:
        """Pixels whose class differs from ``reference`` when the ``excluded`` layers are not INT8.

        A proxy for re-quantizing without them: their Q/DQ pairs are bypassed in this graph, while
        modelopt's own exclusion may also change its placement around them (residual adds). Images
        run one by one; once more than ``stop_above`` pixels differ the rest are not run (the count
        so far is returned).
        """
        from edgeseg.compare import infer
        from edgeseg.runners.loader import onnx_runner

        gone = set(excluded)
        model = bypass_qdq(self._model, [n for n in self.layers if n not in gone])
        wrong = 0
        with onnx_runner(model.SerializeToString(), Precision.INT8,  # type: ignore[attr-defined]
                         name="prediction") as runner:
            for image, ref in zip(images, reference, strict=True):
                wrong += int(np.sum(infer(runner, image[None]).argmax(1)[0] != ref))
                if wrong > stop_above:
                    break
        return wrong

    def macs(self, layer: str) -> int:
        """Multiply-accumulates per image that ``layer`` runs in INT8 here (0 for an Add, a pool)."""
        from edgeseg.precision.coverage import int8_coverage

        if "all" not in self._macs:
            self._macs["all"] = int8_coverage(self._model).macs_int8
        without = int8_coverage(bypass_qdq(self._model, [n for n in self.layers if n != layer])).macs_int8
        return self._macs["all"] - without

    def _push(self, start: int, members: list[str]) -> None:
        out = self._output(members)
        score = float(np.mean((out - self._reference) ** 2)) / self._scale
        heapq.heappush(self._heap, (-score, start, members))

    def _output(self, keep: Collection[str]) -> np.ndarray:
        out = _run_graph(bypass_qdq(self._model, keep), self._images)
        self.sessions += 1
        if self._progress:
            self._progress(self.sessions, len(self.layers))
        return out
