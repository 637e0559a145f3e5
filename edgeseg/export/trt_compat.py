"""Static check that TensorRT's ONNX parser will accept a graph, run on every ONNX a build writes.

TensorRT is not installable on the development machines, so a graph that its parser rejects would
only fail on the target, after the user copied it there. This module encodes the parser's
published operator-support matrix as data and checks a graph against it on the CPU.

Source of the table: onnx-tensorrt ``docs/operators.md`` at tag ``release/10.1-GA`` (commit
96e78110, "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20"). The
restrictions column of that table is encoded in :data:`RESTRICTIONS` for the ops our models and
precision passes emit (Resize, Q/DQ, pooling, the ops whose ``axes`` must be constant) plus the
requirement that convolution / GEMM weights are constants (initializers, or ``DequantizeLinear``
of initializers after INT8 quantization).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.export._graph import GraphIndex
from edgeseg.ops.onnx_plugin import PLUGIN_NAME, plugin_node_problems

__all__ = [
    "CompatIssue",
    "CompatReport",
    "find_trt_issues",
    "check_trt_compat",
    "TRT_SUPPORTED_OPS",
    "KNOWN_PLUGINS",
    "TRT_OPSET_RANGE",
]

#: Opsets of the default ONNX domain that TensorRT 10's parser reads (inclusive).
TRT_OPSET_RANGE = (9, 20)

#: Ops marked "Y" in onnx-tensorrt docs/operators.md (release/10.1-GA).
TRT_SUPPORTED_OPS: frozenset[str] = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv",
    "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp",
    "Expand", "EyeLike", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm",
    "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample",
    "GroupNormalization", "GRU", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual",
    "Log", "LogSoftmax", "Loop", "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool",
    "Mean", "MeanVarianceNormalization", "Min", "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression",
    "NonZero", "Not", "OneHot", "Or", "Pad", "ParametricSoftplus", "Pow", "PRelu", "QuantizeLinear",
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence", "RNN",
    "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus",
    "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})

#: Custom-domain ops that are TensorRT plugins edgeseg ships (cpp_ext: the fused DDC block).
KNOWN_PLUGINS: frozenset[str] = frozenset({PLUGIN_NAME})

# Resize restrictions, verbatim from the table's Restrictions column.
_RESIZE_COORD_MODES = {
    "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners",
}
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
# "Quantized types": INT8, FP8 (E4M3) and INT4 are the Q/DQ types TensorRT accepts.
_QDQ_TYPES = {"INT8", "FLOAT8E4M3FN", "INT4"}
# Ops whose listed restriction is "`axes` must be an initializer" (or a constant): input index.
_CONST_AXES_INPUT = {
    "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSum": 1, "ReduceLogSumExp": 1, "ReduceMax": 1,
    "ReduceMean": 1, "ReduceMin": 1, "ReduceProd": 1, "ReduceSum": 1, "ReduceSumSquare": 1,
    "Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "Pad": 3, "CumSum": 1,
}
# Weight inputs that must be constants (initializers or DequantizeLinear of initializers).
_WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,)}


@dataclass(frozen=True)
class CompatIssue:
    """One reason TensorRT's parser would reject a graph.

    Args:
        node: node name (``"<model>"`` for graph-level problems).
        op_type: the node's op type (with its domain when custom).
        reason: what is wrong, in words.
    """

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op_type}): {self.reason}"


@dataclass
class CompatReport:
    """Result of a passing :func:`check_trt_compat`.

    Args:
        opset: the default-domain opset.
        num_nodes: node count.
        plugins: custom-domain plugin ops found (e.g. ``["EdgesegFusedDDC"]``).
        source: where the support table comes from.
    """

    opset: int
    num_nodes: int
    plugins: list[str] = field(default_factory=list)
    source: str = "onnx-tensorrt docs/operators.md @ release/10.1-GA"


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _check_resize(node: Any, graph: GraphIndex) -> Iterable[str]:
    a = _attrs(node)
    mode = _text(a.get("mode", b"nearest"))
    coord = _text(a.get("coordinate_transformation_mode", b"half_pixel"))
    if mode not in _RESIZE_MODES:
        yield f"mode={mode!r} unsupported (TensorRT: {sorted(_RESIZE_MODES)})"
    if coord not in _RESIZE_COORD_MODES:
        yield (f"coordinate_transformation_mode={coord!r} unsupported "
               f"(TensorRT: {sorted(_RESIZE_COORD_MODES)})")
    if a.get("antialias", 0):
        yield "antialias=1 unsupported (TensorRT does not antialias)"
    policy = _text(a.get("keep_aspect_ratio_policy", b"stretch"))
    if policy != "stretch":
        yield f"keep_aspect_ratio_policy={policy!r} unsupported (TensorRT: 'stretch')"
    if mode == "nearest":
        nearest = _text(a.get("nearest_mode", b"round_prefer_floor"))
        if nearest not in _RESIZE_NEAREST_MODES:
            yield f"nearest_mode={nearest!r} unsupported"
    axes = a.get("axes")
    if axes is not None and list(axes) != list(range(len(axes))):
        yield f"axes={list(axes)} must be an iota vector 0..rank-1"


def _check_qdq(node: Any, graph: GraphIndex) -> Iterable[str]:
    # QuantizeLinear(x, scale, zero_point) / DequantizeLinear(x, scale, zero_point): the quantized
    # type is the zero point's type (Q) or the input's type (DQ); without a zero point, Q emits uint8.
    zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "QuantizeLinear":
        qtype = graph.type_name(zero_point) if zero_point else "UINT8"
    else:
        qtype = graph.type_name(zero_point) if zero_point else graph.type_name(node.input[0])
    if qtype is not None and qtype not in _QDQ_TYPES:
        yield f"quantized type {qtype} unsupported (TensorRT: {sorted(_QDQ_TYPES)})"
    if zero_point:
        value = graph.constant_value(zero_point)
        if value is None:
            yield f"zero point '{zero_point}' must be a constant"
        elif value.astype("float64").any():
            yield f"zero point '{zero_point}' must be 0 (TensorRT quantization is symmetric)"
    if not graph.is_constant(node.input[1]):
        yield f"scale '{node.input[1]}' must be a constant"


def _check_pool(node: Any, graph: GraphIndex) -> Iterable[str]:
    a = _attrs(node)
    dilations = a.get("dilations")
    if dilations and any(d != 1 for d in dilations):
        yield f"dilations={list(dilations)} unsupported (must be empty or all ones)"
    kernel = a.get("kernel_shape")
    if node.op_type in ("AveragePool", "MaxPool") and kernel is not None and len(kernel) not in (2, 3):
        yield f"{len(kernel)}-D pooling unsupported (2D or 3D only)"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        yield "the Indices output is unsupported"


def _check_topk(node: Any, graph: GraphIndex) -> Iterable[str]:
    if not _attrs(node).get("sorted", 1):
        yield "sorted must be 1"


#: Per-op restriction checkers (each yields reasons). Ops listed in ``_CONST_AXES_INPUT`` and
#: ``_WEIGHT_INPUTS`` get their constant-input checks in addition.
RESTRICTIONS: dict[str, Callable[[Any, GraphIndex], Iterable[str]]] = {
    "Resize": _check_resize,
    "QuantizeLinear": _check_qdq,
    "DequantizeLinear": _check_qdq,
    "AveragePool": _check_pool,
    "MaxPool": _check_pool,
    "LpPool": _check_pool,
    "TopK": _check_topk,
}


def find_trt_issues(model: Any, *, plugins: Iterable[str] = KNOWN_PLUGINS) -> list[CompatIssue]:
    """List every reason TensorRT's parser would reject ``model``.

    Args:
        model: an ``onnx.ModelProto`` (shape-inferred for the best type information).
        plugins: custom-domain op types accepted as TensorRT plugins. Defaults to
            :data:`KNOWN_PLUGINS`.

    Returns:
        The issues, in graph order; empty when the graph is compatible.
    """
    issues: list[CompatIssue] = []
    plugins = set(plugins)
    lo, hi = TRT_OPSET_RANGE
    opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not lo <= opset <= hi:
        issues.append(CompatIssue("<model>", "opset",
                                  f"default-domain opset {opset} outside TensorRT's {lo}..{hi}"))
    graph = GraphIndex(model)
    for index, node in enumerate(model.graph.node):
        name = node.name or f"#{index}"
        if node.domain not in ("", "ai.onnx"):
            label = f"{node.domain}::{node.op_type}"
            if node.op_type not in plugins:
                issues.append(CompatIssue(name, label, "custom-domain op is not a known TensorRT plugin "
                                                       f"(known: {sorted(plugins)})"))
            elif node.op_type == PLUGIN_NAME:  # our own plugin: the parser's and creator's contract
                issues.extend(CompatIssue(name, label, r) for r in plugin_node_problems(node))
            continue
        if node.op_type not in TRT_SUPPORTED_OPS:
            issues.append(CompatIssue(name, node.op_type, "op not supported by the TensorRT ONNX parser"))
            continue
        reasons = list(RESTRICTIONS.get(node.op_type, lambda n, g: ())(node, graph))
        axes_index = _CONST_AXES_INPUT.get(node.op_type)
        if (axes_index is not None and len(node.input) > axes_index
                and not graph.is_constant(node.input[axes_index])):
            reasons.append(f"input {axes_index} ('{node.input[axes_index]}') must be a constant")
        for weight_index in _WEIGHT_INPUTS.get(node.op_type, ()):
            if len(node.input) > weight_index and not graph.is_constant(node.input[weight_index]):
                reasons.append(f"weight '{node.input[weight_index]}' must be an initializer "
                               "(or DequantizeLinear of one)")
        issues.extend(CompatIssue(name, node.op_type, r) for r in reasons)
    return issues


def check_trt_compat(model_or_path: Any, *, label: str | None = None,
                     plugins: Iterable[str] = KNOWN_PLUGINS) -> CompatReport:
    """Raise one :class:`EdgesegError` listing every node TensorRT would reject; else report.

    Args:
        model_or_path: an ``onnx.ModelProto`` or the path of an ONNX file.
        label: file name for the message. Defaults to the path (or ``"model"``).
        plugins: accepted custom-domain op types. Defaults to :data:`KNOWN_PLUGINS`.

    Returns:
        A :class:`CompatReport` for a compatible graph.

    Raises:
        EdgesegError: ``"<file>: not TensorRT-compatible (N problems): node 'a' (Resize): ..."``.
    """
    import onnx

    from edgeseg.export.onnx_export import load_onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        label = label or os.fspath(model_or_path)
        model = load_onnx(model_or_path)
    else:
        label, model = label or "model", model_or_path
    # Type information only sharpens the Q/DQ checks; a graph that cannot be inferred is still checked.
    with contextlib.suppress(Exception):
        model = onnx.shape_inference.infer_shapes(model)
    issues = find_trt_issues(model, plugins=plugins)
    if issues:
        shown = "; ".join(str(i) for i in issues[:20])
        more = f"; ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        raise EdgesegError(f"{label}: not TensorRT-compatible ({len(issues)} problem"
                           f"{'s' if len(issues) > 1 else ''}): {shown}{more}")
    found = sorted({n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    opset = next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return CompatReport(opset=opset, num_nodes=len(model.graph.node), plugins=found)
