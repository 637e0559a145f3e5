"""ONNX export of fused models: one ``EdgesegFusedDDC`` custom node per fused DDC block.

TensorRT's ONNX parser hands a node it has no built-in importer for (from 10.15 on, first any node
with a ``plugin_namespace`` attribute) to the plugin creator with the node's ``op_type`` as name and
its ``plugin_version`` / ``plugin_namespace`` STRING attributes as version and namespace; the node's
attributes named like the fields the creator declares become those fields (INT / INTS -> kINT32).
The node written here matches the creator in ``cpp_ext/plugin/fusedDDCPlugin.h``:

* op_type ``EdgesegFusedDDC``, domain ``edgeseg`` (version 1, listed in the model's opset_import);
* attributes ``dilations`` (INTS, 4 values), ``plugin_version = "1"``, ``plugin_namespace = "edgeseg"``;
* inputs, in order: ``x`` (N, C, H, W), ``weight`` (4, C, 3, 3), ``scale`` (4, C), ``shift`` (4, C),
  ``pooled`` (N, C) and optionally ``residual`` (N, 5C, H, W). weight / scale / shift are the fused
  module's buffers, so they land in the graph as initializers (TensorRT turns them into constants);
* output ``y`` (N, 5C, H, W), same element type as ``x`` (float or float16).

Use with the dynamo exporter on a model fused by :func:`~edgeseg.ops.fuse_model`::

    torch.onnx.export(fused, (images,), dynamo=True, custom_translation_table=custom_translation_table())

ONNX Runtime has no kernel for the node; :mod:`edgeseg.ops.ort_custom_op` runs such a graph on the
CPU through the op's CPU kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = [
    "PLUGIN_DOMAIN",
    "PLUGIN_DOMAIN_VERSION",
    "PLUGIN_NAME",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "custom_translation_table",
    "plugin_node_problems",
    "plugin_nodes",
    "plugin_schema",
]

PLUGIN_NAME = "EdgesegFusedDDC"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "edgeseg"
#: ONNX domain of the custom node (its own, so no standard op can collide with it).
PLUGIN_DOMAIN = "edgeseg"
PLUGIN_DOMAIN_VERSION = 1
#: Largest dilation the plugin's creator accepts (``parseDilations`` in fusedDDCPlugin.cpp).
MAX_DILATION = 1024


@functools.cache
def plugin_schema() -> Any:
    """The ``onnx.defs.OpSchema`` of the custom node (inputs, type constraint, attributes).

    It is handed to onnxscript when the node is emitted and is not registered globally: ONNX
    checkers treat the unknown domain as opaque, as TensorRT's parser expects.
    """
    from onnx.defs import OpSchema

    param = OpSchema.FormalParameter
    optional = OpSchema.FormalParameterOption.Optional
    return OpSchema(
        PLUGIN_NAME,
        PLUGIN_DOMAIN,
        PLUGIN_DOMAIN_VERSION,
        doc="Fused DDC steps 2-4 (edgeseg): dilated depthwise branches + BN + ReLU, pooled branch, "
        "channel shuffle (5 groups), residual add.",
        inputs=[
            param("x", "T", "reduced map (N, C, H, W)"),
            param("weight", "T", "depthwise kernels (4, C, 3, 3)"),
            param("scale", "T", "folded BN scale (4, C)"),
            param("shift", "T", "folded BN shift (4, C)"),
            param("pooled", "T", "pooling branch vector (N, C)"),
            param("residual", "T", "added to the output (N, 5C, H, W)", param_option=optional),
        ],
        outputs=[param("y", "T", "shuffled output (N, 5C, H, W)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "FP32 or FP16 (linear NCHW)")],
        attributes=[
            OpSchema.Attribute("dilations", OpSchema.AttrType.INTS, "four dilations (padding = dilation)"),
            OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version"),
            OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
        ],
    )


def _fused_ddc_to_onnx(
    x: Any,
    weight: Any,
    dilations: Sequence[int],
    scale: Any,
    shift: Any,
    pooled: Any,
    residual: Any = None,
) -> Any:
    """Translation of ``torch.ops.edgeseg.fused_ddc`` into the custom node (onnxscript)."""
    from onnxscript.values import Op, Opset

    node = Op(Opset(PLUGIN_DOMAIN, PLUGIN_DOMAIN_VERSION), PLUGIN_NAME, plugin_schema())
    inputs = [x, weight, scale, shift, pooled] + ([] if residual is None else [residual])
    return node(
        *inputs,
        dilations=[int(d) for d in dilations],
        plugin_version=PLUGIN_VERSION,
        plugin_namespace=PLUGIN_NAMESPACE,
    )


def custom_translation_table() -> dict[Callable[..., Any], Callable[..., Any]]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)`` of a fused model.

    Returns:
        ``{torch.ops.edgeseg.fused_ddc.default: translation}``.

    Raises:
        EdgesegError: the compiled op is not available (a model fused without it runs the
            reference, which would export as standard ops instead of plugin nodes).
    """
    import torch

    from edgeseg.ops.fused_ddc_op import extension_available, extension_error

    if not extension_available():
        raise EdgesegError(
            f"exporting with the fused-ddc plugin needs the compiled op edgeseg._C ({extension_error()}); "
            "reinstall with `pip install --no-build-isolation -e .`"
        )
    return {torch.ops.edgeseg.fused_ddc.default: _fused_ddc_to_onnx}


def plugin_node_problems(node: Any) -> list[str]:
    """Why TensorRT's parser or the plugin's creator would refuse ``node`` (empty when it would not).

    The checks mirror what the parser and ``EdgesegFusedDDCCreator::createPlugin`` require: the
    creator is found by name, version and namespace; the ``dilations`` field must be 4 ints in
    1..:data:`MAX_DILATION`; every input and the output must be named (the parser passes an empty
    input name on as a null tensor).

    Args:
        node: an ``onnx.NodeProto``.
    """
    import onnx

    problems = []
    if node.domain != PLUGIN_DOMAIN or node.op_type != PLUGIN_NAME:
        problems.append(f"expected op_type '{PLUGIN_NAME}' in domain '{PLUGIN_DOMAIN}'")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("plugin_version") != PLUGIN_VERSION.encode() or (
        attrs.get("plugin_namespace") != PLUGIN_NAMESPACE.encode()
    ):
        problems.append(
            f"plugin_version/plugin_namespace must be the STRINGs '{PLUGIN_VERSION}'/'{PLUGIN_NAMESPACE}'"
        )
    dilations = attrs.get("dilations")
    if (
        not isinstance(dilations, list)
        or len(dilations) != 4
        or not all(isinstance(d, int) and 1 <= d <= MAX_DILATION for d in dilations)
    ):
        problems.append(f"'dilations' must be 4 INTS in 1..{MAX_DILATION}, got {dilations!r}")
    if len(node.input) not in (5, 6) or len(node.output) != 1:
        problems.append(f"expected 5 or 6 inputs and 1 output, got {len(node.input)}/{len(node.output)}")
    elif not all(node.input) or not node.output[0]:
        problems.append("every input and the output must be named (an empty name is a missing tensor)")
    return problems


def plugin_nodes(model: Any) -> list[Any]:
    """The ``EdgesegFusedDDC`` nodes of an ONNX model, checked against the plugin's contract.

    Args:
        model: an ``onnx.ModelProto``.

    Returns:
        The plugin nodes in graph order (possibly empty).

    Raises:
        EdgesegError: a node of the plugin domain (or an ``EdgesegFusedDDC`` node of the default
            domain) breaks :func:`plugin_node_problems`, or the model does not import the plugin
            domain.
    """
    # Other custom domains (e.g. onnxruntime-extensions' copy of the node) are not TensorRT's concern.
    default_domain = ("", "ai.onnx")
    nodes = [
        n
        for n in model.graph.node
        if n.domain == PLUGIN_DOMAIN or (n.op_type == PLUGIN_NAME and n.domain in default_domain)
    ]
    if nodes and not any(o.domain == PLUGIN_DOMAIN for o in model.opset_import):
        raise EdgesegError(f"ONNX model has {PLUGIN_NAME} nodes but no '{PLUGIN_DOMAIN}' opset_import")
    for node in nodes:
        problems = plugin_node_problems(node)
        if problems:
            where = f"{node.domain or 'ai.onnx'}::{node.op_type} node '{node.name}'"
            raise EdgesegError(f"{where}: {problems[0]}")
    return nodes
