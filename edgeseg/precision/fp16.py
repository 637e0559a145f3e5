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
"""

from __future__ import annotations

import os
import tempfile
import time
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

    from edgeseg.export.onnx_export import INPUT_NAME, carry_metadata, check_and_infer, load_onnx, save_onnx

    start = time.perf_counter()
    source = load_onnx(src)  # clear error for a missing / non-ONNX file before modelopt sees it
    with tempfile.TemporaryDirectory(prefix="edgeseg-fp16-") as tmp:
        calibration_path = None
        if reference_inputs is not None:
            batch = _static_batch(source)
            data = np.asarray(reference_inputs, dtype=np.float32)
            # AutoCast's reference runner reads a folder of .npz files, one inference per file.
            calibration_path = os.path.join(tmp, "reference")
            os.mkdir(calibration_path)
            for i in range(0, len(data) - batch + 1, batch):
                feed: dict[str, Any] = {INPUT_NAME: data[i:i + batch]}
                np.savez(os.path.join(calibration_path, f"{i:05d}.npz"), **feed)
            if not os.listdir(calibration_path):
                calibration_path = None
        from modelopt.onnx.autocast import convert_to_mixed_precision

        with quiet_modelopt():
            try:
                model = convert_to_mixed_precision(
                    onnx_path=os.fspath(src),
                    low_precision_type="fp16",
                    nodes_to_exclude=nodes_to_exclude or [],
                    data_max=data_max,
                    keep_io_types=True,
                    calibration_data=calibration_path,
                    providers=["cpu"],
                    opset=_opset(source),
                )
            except Exception as e:  # modelopt raises bare Exceptions / AssertionErrors on bad graphs
                raise EdgesegError(f"{src}: FP16 conversion failed ({type(e).__name__}: {e})") from e
    carry_metadata(source, model)
    model = check_and_infer(model, label=str(dst))
    save_onnx(model, dst)
    fp32_nodes = _fp32_compute_nodes(model, onnx)
    return Fp16Result(path=Path(dst), fp32_nodes=fp32_nodes, num_nodes=len(model.graph.node),
                      seconds=time.perf_counter() - start)


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
