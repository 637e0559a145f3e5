"""INT8: explicit Q/DQ placed for TensorRT by Model Optimizer, with scales from our calibration.

TensorRT 11 has no INT8 calibrators any more; INT8 comes from ``QuantizeLinear`` /
``DequantizeLinear`` pairs in the ONNX graph. Model Optimizer (``modelopt.onnx.quantization``)
places them the way TensorRT fuses them (Conv inputs with per-channel symmetric weights, both
inputs of residual Adds, zero points 0, Resize/ArgMax left in float).

Calibration is split from placement so that it runs once:

1. :func:`edgeseg.precision.ranges.collect_ranges` computes every activation's range (``max``,
   ``percentile`` or ``entropy``);
2. the scales (amax / 127) are written as a TensorRT calibration cache
   (:func:`write_calibration_cache`; text, one ``tensor: <big-endian float32 hex>`` per line), the
   format TensorRT tools and modelopt (``calibration_cache_path``) both read;
3. :func:`quantize_int8` lets modelopt place Q/DQ and then takes every activation scale from the
   cache. modelopt's own calibration pass is handed the cached ranges instead of running
   (:func:`_cached_calibration`): run, it appends a ReduceMin/ReduceMax pair per tensor at the
   end of the graph, which keeps every activation alive until the end (10 GiB for one 1024x2048
   image through a ResNet-50), only to compute scales that are overwritten from the cache. Like modelopt's own
   calibration, the inputs and output of each Concat share one range (the largest), so TensorRT
   can drop the requantization around the concat (:func:`share_concat_ranges`).

The accuracy guard re-runs step 3 with layers excluded, never steps 1-2.

Non-quantized ops run in ``high_precision_dtype``: ``fp16`` (default; what TensorRT wants for
speed) or ``fp32``. Q/DQ graphs must be validated with ONNX Runtime's Q/DQ fusion off
(:func:`edgeseg.runners.loader.ort_settings`): its CPU fusions rewrite Q/DQ + fp16 chains into
integer kernels and change the numbers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.precision._modelopt import quiet_modelopt

__all__ = [
    "Int8Result",
    "quantize_int8",
    "write_calibration_cache",
    "read_calibration_cache",
    "quantized_nodes",
    "share_concat_ranges",
    "HIGH_PRECISION_DTYPES",
    "INT8_MIN_OPSET",
]

HIGH_PRECISION_DTYPES = ("fp16", "fp32")
#: Q/DQ with fp16 scales needs opset 19; modelopt raises int8 graphs to it.
INT8_MIN_OPSET = 19
_CACHE_HEADER = "TRT-8600-EntropyCalibration2"
# INT8 symmetric: amax maps to level 127 (TensorRT and ONNX Runtime's symmetric int8 both use 127).
_QMAX = 127.0


@dataclass
class Int8Result:
    """What :func:`quantize_int8` wrote.

    Args:
        path: the Q/DQ ONNX file.
        quantized_nodes: names of the nodes that consume INT8 (de)quantized inputs.
        excluded_nodes: nodes kept in high precision on request.
        high_precision_dtype: dtype of the non-quantized ops.
        num_qdq: number of QuantizeLinear + DequantizeLinear nodes.
        seconds: wall time.
    """

    path: Path
    quantized_nodes: list[str] = field(default_factory=list)
    excluded_nodes: list[str] = field(default_factory=list)
    high_precision_dtype: str = "fp16"
    num_qdq: int = 0
    seconds: float = 0.0


def _checksum_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path) + ".sha256")


def write_calibration_cache(path: str | os.PathLike[str], amax: dict[str, float]) -> None:
    """Write activation scales (``amax / 127``) as a TensorRT calibration cache, atomically.

    The header names TensorRT's calibrator format (the line tools check); the values are ours. A
    ``<cache>.sha256`` file beside it records the content's hash, written last, so a cache cut short
    by a crash or edited by hand is detected (:func:`read_calibration_cache`) instead of trusted.
    """
    from edgeseg._io import atomic_write, sha256_bytes

    lines = [f"{name}: {struct.pack('!f', v / _QMAX).hex()}\n" for name, v in amax.items()]
    text = _CACHE_HEADER + "\n" + "".join(lines)
    with atomic_write(path, "w") as f:
        f.write(text)
    with atomic_write(_checksum_path(path), "w") as f:
        f.write(sha256_bytes(text.encode()) + "\n")


def read_calibration_cache(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read a calibration cache back to ``{tensor: amax}``, checking it against its recorded hash.

    Raises:
        EdgesegError: the file or its ``.sha256`` is missing, the hash differs, or a line is malformed.
    """
    from edgeseg._io import sha256_file

    checksum = _checksum_path(path)
    if not checksum.is_file():
        raise EdgesegError(f"{path}: no {checksum.name} beside it (written by an interrupted or older build)")
    if sha256_file(path) != checksum.read_text().strip():
        raise EdgesegError(f"{path}: content does not match {checksum.name} (truncated or edited)")
    out = {}
    lines = Path(path).read_text().splitlines()
    for line in lines[1:]:
        name, sep, value = line.rpartition(": ")
        if not sep:
            raise EdgesegError(f"{path}: not a TensorRT calibration cache (line {line!r})")
        out[name] = struct.unpack("!f", bytes.fromhex(value))[0] * _QMAX
    return out


def share_concat_ranges(model: Any, amax: dict[str, float]) -> dict[str, float]:
    """Give each Concat's inputs and output their common (largest) range.

    modelopt's own calibration does the same (``get_concat_eliminated_tensors``), because TensorRT
    can only fold the Q/DQ around a concat when all its operands share one scale. Every node is
    offered as quantizable, so every concat groups; for ``max`` this is exactly modelopt's result
    (a concat's output range is the largest of its inputs').
    """
    from modelopt.onnx.quantization.graph_utils import get_concat_eliminated_tensors

    groups = get_concat_eliminated_tensors(model, [n.name for n in model.graph.node])
    out = dict(amax)
    for tensor, members in groups.items():
        known = [amax[m] for m in members if m in amax]
        if tensor in out and known:
            out[tensor] = max(known)
    return out


@contextlib.contextmanager
def _cached_calibration(amax: dict[str, float]) -> Iterator[None]:
    """Make modelopt's MinMax calibrator report ``amax`` (as ``[-amax, amax]``) without running.

    modelopt installs its calibrator factory (``ort_patching._create_calibrator_with_extra_options``)
    into ONNX Runtime on every ``quantize`` call; for the block that factory is wrapped, and ONNX
    Runtime's is restored after. A calibrator that asks for a tensor ``amax`` lacks runs as before.
    """
    from modelopt.onnx.quantization import ort_patching
    from onnxruntime.quantization import calibrate

    factory, installed = ort_patching._create_calibrator_with_extra_options, calibrate.create_calibrator

    def cached(*args: Any, **kwargs: Any) -> Any:
        calibrator = factory(*args, **kwargs)
        if not isinstance(calibrator, calibrate.MinMaxCalibrater):
            return calibrator
        # The augmented graph's extra outputs are "<tensor>_ReduceMin", "<tensor>_ReduceMax" pairs.
        added = calibrator.infer_session.get_outputs()[calibrator.num_model_outputs::2]
        names = [o.name.rpartition("_")[0] for o in added]
        if not all(n in amax for n in names):
            return calibrator
        ranges = calibrate.TensorsData(calibrate.CalibrationMethod.MinMax, {
            n: (np.array(-amax[n], np.float32), np.array(amax[n], np.float32)) for n in names})
        calibrator.collect_data = lambda data_reader: None
        calibrator.compute_data = lambda: ranges
        return calibrator

    ort_patching._create_calibrator_with_extra_options = cached
    try:
        yield
    finally:
        ort_patching._create_calibrator_with_extra_options = factory
        calibrate.create_calibrator = installed


def quantized_nodes(model: Any) -> list[str]:
    """Names of the compute nodes fed by a DequantizeLinear of an activation (the INT8 layers)."""
    from edgeseg.export._graph import GraphIndex

    graph = GraphIndex(model)
    names = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for tensor in node.input:
            producer = graph.producer.get(tensor)
            is_dq = producer is not None and producer.op_type == "DequantizeLinear"
            if is_dq and not graph.is_constant(tensor):
                names.append(node.name)
                break
    return names


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    calibration_cache: str | os.PathLike[str],
    sample: np.ndarray,
    nodes_to_exclude: list[str] | None = None,
    high_precision_dtype: str = "fp16",
    opset: int | None = None,
) -> Int8Result:
    """Insert Q/DQ into ``src`` with modelopt and the scales of ``calibration_cache``.

    Args:
        src: the simplified FP32 graph.
        dst: destination (written atomically).
        calibration_cache: TensorRT calibration cache from :func:`write_calibration_cache`.
        sample: one or a few preprocessed images ``(N, 3, H, W)`` for modelopt's placement pass.
        nodes_to_exclude: exact node names kept out of INT8.
        high_precision_dtype: ``"fp16"`` or ``"fp32"`` for the non-quantized ops. Defaults to fp16.
        opset: target opset (raised to :data:`INT8_MIN_OPSET`). Defaults to the minimum.

    Returns:
        An :class:`Int8Result`.
    """
    import onnx

    from edgeseg.export.onnx_export import carry_metadata, check_and_infer, load_onnx, save_onnx

    if high_precision_dtype not in HIGH_PRECISION_DTYPES:
        raise EdgesegError(f"high-precision dtype must be one of {HIGH_PRECISION_DTYPES}, "
                           f"got {high_precision_dtype!r}")
    start = time.perf_counter()
    source = load_onnx(src)  # a clear error for a missing / non-ONNX file before modelopt sees it
    excluded = list(nodes_to_exclude or [])
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-") as tmp, quiet_modelopt():
        # modelopt writes intermediate files beside its input; keep them out of the build folder.
        work = os.path.join(tmp, "model.onnx")
        shutil.copyfile(src, work)
        out = os.path.join(tmp, "model.int8.onnx")
        cache = os.path.join(tmp, "grouped.cache")
        amax = share_concat_ranges(source, read_calibration_cache(calibration_cache))
        write_calibration_cache(cache, amax)
        from modelopt.onnx.quantization import quantize

        with _cached_calibration(amax):
            try:
                quantize(
                    onnx_path=work,
                    quantize_mode="int8",
                    calibration_data=np.ascontiguousarray(sample, dtype=np.float32),
                    calibration_method="max",
                    calibration_cache_path=cache,
                    calibration_eps=["cpu"],
                    # modelopt matches these as regular expressions; anchor them to exact names.
                    nodes_to_exclude=[f"^{re.escape(n)}$" for n in excluded],
                    high_precision_dtype=high_precision_dtype,
                    output_path=out,
                    log_level="ERROR",
                    opset=max(opset or INT8_MIN_OPSET, INT8_MIN_OPSET),
                )
            except Exception as e:  # modelopt raises bare Exceptions / AssertionErrors on bad graphs
                raise EdgesegError(f"{src}: INT8 quantization failed ({type(e).__name__}: {e})") from e
        if not os.path.isfile(out):
            raise EdgesegError(f"{src}: modelopt wrote no quantized model")
        model = onnx.load(out)
    carry_metadata(source, model)
    model = check_and_infer(model, label=str(dst))
    save_onnx(model, dst)
    num_qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    return Int8Result(path=Path(dst), quantized_nodes=quantized_nodes(model), excluded_nodes=excluded,
                      high_precision_dtype=high_precision_dtype, num_qdq=num_qdq,
                      seconds=time.perf_counter() - start)
