"""FP16: a strongly typed mixed-precision graph for TensorRT (its precision is in the ONNX types).

TensorRT 11 removed the FP16 builder flag, and TensorRT 10 parses a strongly typed network the
same way: each tensor's ONNX type decides its precision. The conversion is done by TensorRT Model
Optimizer's AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``).

Rule for what stays FP32 (AutoCast's node classifier, with these settings):

* the graph input ``images`` and output ``logits`` stay float32 (``keep_io_types``), so callers
  feed and read the same arrays as for the FP32 graph; casts are inserted inside the graph;
* a node stays FP32 when any of its inputs or outputs exceeds ``|x| > 512`` on the reference
  inputs (above 512 the FP16 spacing is ≥ 0.5, so e.g. large pre-softmax logits or un-normalised
  sums lose whole units) — the reference inputs are the calibration images when given, else
  random normal inputs;
* a node stays FP32 when one of its initializers does not fit FP16 (|w| > 65504);
* nodes named in ``nodes_to_exclude`` (regular expressions) stay FP32.

AutoCast's own reference runner exposes every tensor as a graph output and keeps all of them for
every reference batch (14 GiB for one 1024x2048 ResNet-50 image). It is replaced for the call by
:class:`_StreamingReferenceRunner`, which computes the same per-tensor statistics (|x| max, min,
max, shape) on the same inputs segment by segment (:func:`edgeseg.precision.ranges.iter_activations`),
keeping only those numbers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.precision._modelopt import quiet_modelopt

__all__ = ["Fp16Result", "convert_fp16", "DATA_MAX"]

#: AutoCast's default I/O magnitude limit for FP16 nodes (see the module docstring).
DATA_MAX = 512.0


@dataclass
class Fp16Result:
    """What :func:`convert_fp16` wrote.

    Args:
        path: the FP16 ONNX file.
        fp32_nodes: names of the compute nodes kept in FP32 by the rule.
        num_nodes: node count of the converted graph (including inserted casts).
        seconds: wall time.
    """

    path: Path
    fp32_nodes: list[str] = field(default_factory=list)
    num_nodes: int = 0
    seconds: float = 0.0


def convert_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    reference_inputs: Any = None,
    nodes_to_exclude: list[str] | None = None,
    data_max: float = DATA_MAX,
) -> Fp16Result:
    """Convert an FP32 ONNX graph to mixed FP16/FP32 with FP32 inputs and outputs.

    Args:
        src: the simplified FP32 graph.
        dst: destination (written atomically).
        reference_inputs: float32 array ``(N, 3, H, W)`` of representative (normalised) inputs
            used to measure node I/O ranges; the graph's batch must accept them one at a time.
            Defaults to None (random inputs).
        nodes_to_exclude: node-name regular expressions to keep in FP32. Defaults to none.
        data_max: I/O magnitude above which a node stays FP32. Defaults to :data:`DATA_MAX`.

    Returns:
        An :class:`Fp16Result` naming the nodes kept in FP32.
    """
    import numpy as np
    import onnx

    from edgeseg.export.onnx_export import carry_metadata, check_and_infer, load_onnx, save_onnx

    start = time.perf_counter()
    source = load_onnx(src)  # clear error for a missing / non-ONNX file before modelopt sees it
    batches = None
    if reference_inputs is not None:
        batch = _static_batch(source)
        data = np.asarray(reference_inputs, dtype=np.float32)
        # One reference inference per whole batch, as AutoCast runs one per calibration file.
        batches = data[:len(data) // batch * batch] if len(data) >= batch else None
    from modelopt.onnx.autocast import convert_to_mixed_precision

    with quiet_modelopt(), _streaming_reference(batches):
        try:
            model = convert_to_mixed_precision(
                onnx_path=os.fspath(src),
                low_precision_type="fp16",
                nodes_to_exclude=nodes_to_exclude or [],
                data_max=data_max,
                keep_io_types=True,
                providers=["cpu"],
                opset=_opset(source),
            )
        except EdgesegError:
            raise
        except Exception as e:  # modelopt raises bare Exceptions / AssertionErrors on bad graphs
            raise EdgesegError(f"{src}: FP16 conversion failed ({type(e).__name__}: {e})") from e
    carry_metadata(source, model)
    model = check_and_infer(model, label=str(dst))
    save_onnx(model, dst)
    fp32_nodes = _fp32_compute_nodes(model, onnx)
    return Fp16Result(path=Path(dst), fp32_nodes=fp32_nodes, num_nodes=len(model.graph.node),
                      seconds=time.perf_counter() - start)


class _StreamingReferenceRunner:
    """AutoCast's ``ReferenceRunner`` (same constructor and ``run`` result), with bounded memory.

    ``run`` returns, for every graph input and every output of a non-Constant node, the
    ``TensorStats`` AutoCast aggregates over batches: the node classifier reads only these.

    Args:
        model: the (sanitized) model AutoCast classifies.
        batches: float32 reference inputs, a whole number of the graph's batches, or None for
            AutoCast's default: one batch of Polygraphy's random inputs in ``[-1, 1]``.
    """

    def __init__(self, model: Any, batches: Any) -> None:
        self.model = model
        self.batches = batches

    def run(self, inputs: Any = None) -> OrderedDict[str, Any]:
        import copy

        import numpy as np
        from modelopt.onnx.autocast.referencerunner import TensorStats
        from modelopt.onnx.utils import clear_stale_value_info

        from edgeseg.export.onnx_export import INPUT_NAME
        from edgeseg.precision.ranges import iter_activations

        model = copy.deepcopy(self.model)
        clear_stale_value_info(model)  # as AutoCast does before running: types are re-inferred
        data = self.batches if self.batches is not None else self._random_batch(model)
        names = list(dict.fromkeys([INPUT_NAME, *(o for n in model.graph.node if n.op_type != "Constant"
                                                  for o in n.output if o)]))
        stats: OrderedDict[str, Any] = OrderedDict()
        for name, value in iter_activations(model, data, names):
            empty = value.size == 0
            absmax, low, high = (0, 0, 0) if empty else (np.max(np.abs(value)), np.min(value), np.max(value))
            old = stats.get(name)
            if old is None:
                stats[name] = TensorStats(absmax=absmax, min_val=low, max_val=high, shape=value.shape)
            else:
                old.absmax, old.min_val, old.max_val = (max(old.absmax, absmax), min(old.min_val, low),
                                                        max(old.max_val, high))
        return stats

    @staticmethod
    def _random_batch(model: Any) -> Any:
        """The inputs AutoCast draws without reference data (Polygraphy's loader, its fixed seed)."""
        from polygraphy.backend.onnx.util import get_input_metadata
        from polygraphy.comparator import DataLoader

        from edgeseg.export.onnx_export import INPUT_NAME

        loader = DataLoader(val_range={"": (-1, 1)})
        loader.input_metadata = get_input_metadata(model.graph)
        return loader[0][INPUT_NAME]


@contextlib.contextmanager
def _streaming_reference(batches: Any) -> Iterator[None]:
    """Let AutoCast's conversion use :class:`_StreamingReferenceRunner` for the block."""
    from modelopt.onnx.autocast import convert

    original = convert.ReferenceRunner
    convert.ReferenceRunner = lambda model, *_args: _StreamingReferenceRunner(model, batches)
    try:
        yield
    finally:
        convert.ReferenceRunner = original


def _opset(model: Any) -> int:
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _static_batch(model: Any) -> int:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else 1


def _fp32_compute_nodes(model: Any, onnx: Any) -> list[str]:
    """Names of non-cast nodes whose first output is still float32 after conversion."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*model.graph.value_info, *model.graph.output]}
    skip = {"Cast", "Shape", "Constant", "Concat", "Reshape", "Gather", "Unsqueeze", "Squeeze", "Slice"}
    return [n.name for n in model.graph.node
            if n.op_type not in skip and n.output and types.get(n.output[0]) == onnx.TensorProto.FLOAT]
