"""Which precisions an engine really runs in, read from TensorRT's engine inspector.

A strongly typed build takes its precision from the ONNX graph; if the FP16 casts or the INT8 Q/DQ
pairs were lost on the way (an exporter folding them, a graph rewrite, a TensorRT fallback), the
build still succeeds and silently runs FP32. So after every build edgeseg reads the inspector's
JSON (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``, which lists per-layer
tensor types only when the engine was built with ``ProfilingVerbosity.DETAILED``) and refuses an
engine whose requested precision does not appear in any compute layer.

Everything in this module is pure Python over that JSON so it is unit-tested without TensorRT.

Document format, as TensorRT documents it::

    {"Layers": [{"Name": "...", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                 "Inputs":  [{"Name": "x", "Dimensions": [1, 64, 128, 128],
                              "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
                 "Outputs": [...], "Weights": {"Type": "Int8", "Count": 36864}, ...}, ...],
     "Bindings": ["images", "logits"]}

Only ``Layers`` is read. The per-tensor type key is ``Format/Datatype`` up to 10.x (and still in the
11.1 samples and Polygraphy); TensorRT 11 tooling also knows separate ``Format`` and ``Datatype``
keys (``.agents/skills/trt-perf-analysis/scripts/trt_perf/data.py`` in NVIDIA/TensorRT release/11.1).
``DataType``, ``Datatype`` and ``Format/Datatype`` are read, in that order. Which spelling a given
11.x release emits is unverified here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["PRECISIONS", "PrecisionCheck", "layer_dtype_counts", "check_precision_realized"]

#: Build precisions; each must show up as a tensor type of at least one compute layer.
PRECISIONS = ("fp32", "fp16", "int8")

# Type words as TensorRT spells them in format descriptions ("Channel major FP16 format ...") and in
# DataType names ("Half"), mapped to one vocabulary. Longest alternatives first so "BFloat16" is not
# read as "Float".
_TYPE_WORDS = {
    "bfloat16": "bf16", "bf16": "bf16",
    "fp8": "fp8",
    "fp16": "fp16", "half": "fp16",
    "fp32": "fp32", "float": "fp32",
    "int8": "int8", "uint8": "uint8",
    "int32": "int32", "int64": "int64",
    "bool": "bool",
}
_TYPE_RE = re.compile(r"\b(" + "|".join(sorted(_TYPE_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)

# Layers that move or re-type data without computing on it. A standalone (unfused) Quantize /
# Dequantize pair produces and consumes Int8 tensors while the convolution between them still runs
# in float, so counting these would report INT8 that is not there.
_DATA_MOVEMENT = re.compile(r"reformat|noop|no-op|shuffle|quantize|dequantize|cast|constant|identity",
                            re.IGNORECASE)
# "Origin" values of layers TensorRT inserted to quantize/dequantize or reformat (the trex examples
# in NVIDIA/TensorRT v10.3.0 show them on Reformat layers); also data movement.
_INSERTED_ORIGINS = {"QDQ", "REFORMAT"}


@dataclass(frozen=True)
class PrecisionCheck:
    """Outcome of :func:`check_precision_realized`; truthy when the precision was realized.

    Attributes:
        precision: the requested precision.
        realized: whether some compute layer runs in it.
        counts: number of compute layers per tensor type found (``{"int8": 41, "fp32": 3}``).
        message: one line for logs and errors.
    """

    precision: str
    realized: bool
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def __bool__(self) -> bool:
        return self.realized


def _tensor_dtype(tensor: dict[str, Any]) -> str | None:
    # Up to 10.x: {"Format/Datatype": "... FP16 ..."}; 11.x may split it: {"Datatype": "Half", "Format": ...}.
    text = tensor.get("DataType") or tensor.get("Datatype") or tensor.get("Format/Datatype") or ""
    match = _TYPE_RE.search(str(text))
    return _TYPE_WORDS[match.group(1).lower()] if match else None


def _layers(info: str | dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except json.JSONDecodeError as e:
            raise EdgesegError(f"engine inspector output is not JSON ({e})") from None
    layers = info.get("Layers") if isinstance(info, dict) else None
    if not isinstance(layers, list):
        raise EdgesegError("engine inspector output has no 'Layers' list")
    if layers and not all(isinstance(layer, dict) for layer in layers):
        # With the default LAYER_NAMES_ONLY verbosity TensorRT lists bare names, no tensor types.
        raise EdgesegError("engine inspector output lists layer names only; build the engine with "
                           "ProfilingVerbosity.DETAILED to see layer precisions")
    return layers


def layer_dtype_counts(info: str | dict[str, Any]) -> dict[str, int]:
    """Count compute layers by the tensor types they consume.

    A layer counts once for each distinct type among its input tensors and its weights; data
    movement layers (reformat, shuffle, standalone quantize/dequantize, cast, constant, and layers whose
    ``Origin`` is ``QDQ`` or ``REFORMAT``) are skipped.

    Args:
        info: the inspector's JSON, as a string or parsed.

    Returns:
        ``{type: number of layers}`` with types from ``fp32, fp16, bf16, fp8, int8, uint8, int32,
        int64, bool``.

    Raises:
        EdgesegError: not inspector JSON, or built without detailed profiling verbosity.
    """
    counts: Counter[str] = Counter()
    for layer in _layers(info):
        kind = f"{layer.get('LayerType', '')} {layer.get('ParameterType', '')}"
        if _DATA_MOVEMENT.search(kind) or str(layer.get("Origin", "")).upper() in _INSERTED_ORIGINS:
            continue
        types = {_tensor_dtype(t) for t in layer.get("Inputs", []) if isinstance(t, dict)}
        weights = layer.get("Weights")
        if isinstance(weights, dict) and weights.get("Count"):
            types.add(_TYPE_WORDS.get(str(weights.get("Type", "")).lower()))
        counts.update(t for t in types if t is not None)
    return dict(counts)


def check_precision_realized(info: str | dict[str, Any], precision: str) -> PrecisionCheck:
    """Did a build for ``precision`` produce an engine that computes in it?

    ``fp16`` needs at least one compute layer with an FP16 input, ``int8`` one with an INT8 input or
    INT8 weights, ``fp32`` one with an FP32 input.

    Args:
        info: the inspector's JSON (string or parsed) of the built engine.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.

    Returns:
        A :class:`PrecisionCheck`; falsy when the precision was not realized.
    """
    if precision not in PRECISIONS:
        raise EdgesegError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    counts = layer_dtype_counts(info)
    found = counts.get(precision, 0)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"
    if found:
        message = f"{precision} realized in {found} compute layer(s) (layer input types: {summary})"
    else:
        message = (f"requested {precision} but no compute layer of the engine runs in {precision} "
                   f"(layer input types: {summary}); the ONNX graph's "
                   f"{'Q/DQ nodes' if precision == 'int8' else 'tensor types'} did not reach TensorRT")
    return PrecisionCheck(precision, bool(found), counts, message)
