"""Export a build for DeepStream's ``nvinfer`` element (semantic segmentation, ``network-type=2``).

Two facts of nvinfer's documented behaviour decide what is written:

* **Preprocessing** is ``y = net-scale-factor * (x - offsets[c])`` on 0..255 pixels, with *one*
  scale for all channels. The card's normalisation ``(x / 255 - mean_c) / std_c`` equals
  ``(x - 255 mean_c) / (255 std_c)``: ``offsets`` = ``255 * mean`` is exact, but a per-channel
  ``std`` is not expressible. Rather than approximate it (with ImageNet statistics a single scale
  of 1 / (255 * mean std) is off by up to 1.3 % on the red channel, which moves class boundaries), the
  exported graph is given one leading ``Mul`` by ``std_ref / std_c`` per channel and
  ``net-scale-factor`` = ``1 / (255 std_ref)``: nvinfer's output times that factor is exactly the
  card's normalisation. With equal std on all channels no ``Mul`` is added.
* **Channel order**: ``model-color-format`` 0 hands the network RGB planes, 1 BGR; ``offsets[c]``
  apply to the network's channel ``c``. A card whose ``channels`` is bgr gets 1, and its (RGB)
  mean/std reordered to BGR for the offsets and the folded factors. The layout stays NCHW: the
  fold multiplies the channel axis 1, so a card whose ``layout`` is nhwc is refused (a build
  from the source with ``--layout nhwc`` folds the transpose into its graph and takes NCHW).
* **Postprocessing** by nvinfer's built-in segmentation parser takes, per pixel, the channel with
  the highest value *above* ``segmentation-threshold`` (which must be >= 0), starting from -1, and
  reads FP32 only. Raw logits are often negative, so the graph also gets a ``Softmax`` over the
  class axis, and its FP32 output ``probs`` is what ``output-blob-names`` names.

The graph therefore differs from the build's, and nvinfer builds its own engine from
``onnx-file`` on first start (then caches it; ``model-engine-file`` names where); the build's
engine is not reused. Files written into ``--out``::

    config_infer_<name>.txt   the [property] group for nvinfer (paths relative to this file)
    <name>.deepstream.onnx    the build's graph + std fold + softmax
    labels.txt                one class name per line
"""

from __future__ import annotations

import configparser
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg._io import atomic_write
from edgeseg._names import safe_name
from edgeseg.build_folder import CARD_FILE, BuildArtifacts, Precision
from edgeseg.checkpoint import RGB_INDEX
from edgeseg.errors import EdgesegError
from edgeseg.export.graph_io import onnx_io

__all__ = [
    "DeepStreamExport",
    "export_deepstream",
    "NETWORK_MODES",
    "deepstream_normalisation",
    "fold_and_softmax",
]

#: nvinfer ``network-mode``: 0 = FP32, 1 = INT8, 2 = FP16.
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
PROBS_OUTPUT = "probs"


@dataclass
class DeepStreamExport:
    """What :func:`export_deepstream` wrote.

    Attributes:
        config_path: the nvinfer config file.
        onnx_path: the exported graph.
        labels_path: the labels file.
        properties: the ``[property]`` group as written (strings).
        channel_factors: the per-channel factors folded into the graph (all 1.0 when none).
        notes: things a deployer should know (engine not reused, precision realisation...).
    """

    config_path: Path
    onnx_path: Path
    labels_path: Path
    properties: dict[str, str]
    channel_factors: list[float]
    notes: list[str] = field(default_factory=list)


def deepstream_normalisation(
    mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[float, list[float], list[float]]:
    """nvinfer's ``net-scale-factor`` and ``offsets`` for a card, plus the per-channel graph factors.

    Returns:
        ``(net_scale_factor, offsets, channel_factors)``: ``offsets[c] = 255 mean_c``,
        ``net_scale_factor = 1 / (255 std_ref)`` with ``std_ref`` the mean std, and
        ``channel_factors[c] = std_ref / std_c`` so that
        ``channel_factors[c] * net_scale_factor * (x - offsets[c]) == (x / 255 - mean_c) / std_c``.
    """
    std_ref = float(np.mean(std))
    factors = [std_ref / float(s) for s in std]
    if max(abs(f - 1.0) for f in factors) < 1e-6:
        factors = [1.0, 1.0, 1.0]
    return 1.0 / (255.0 * std_ref), [255.0 * float(m) for m in mean], factors


def fold_and_softmax(
    src: Path, dst: Path, channel_factors: list[float], input_name: str, output_name: str
) -> None:
    """Write ``src`` with a leading per-channel ``Mul`` (unless all factors are 1) and a trailing ``Softmax``.

    The graph input keeps its name, shape and type; the old output stays inside the graph and the
    new FP32 output ``probs`` (same shape) replaces it.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(os.fspath(src))
    graph = model.graph
    new_nodes = []
    if any(f != 1.0 for f in channel_factors):
        folded = f"{input_name}__edgeseg_std_fold"
        for node in graph.node:  # every consumer of the input now reads the scaled input
            node.input[:] = [folded if name == input_name else name for name in node.input]
        scale = numpy_helper.from_array(
            np.array(channel_factors, np.float32).reshape(1, 3, 1, 1),
            name=f"{input_name}__edgeseg_std_factors",
        )
        graph.initializer.append(scale)
        new_nodes.append(helper.make_node("Mul", [input_name, scale.name], [folded], name="edgeseg_std_fold"))
    outputs = {o.name: o for o in graph.output}
    if output_name not in outputs:
        raise EdgesegError(f"{src}: no output named {output_name!r} (outputs: {sorted(outputs)})")
    old = outputs[output_name]
    elem_type = old.type.tensor_type.elem_type
    if elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        raise EdgesegError(f"{src}: output {output_name!r} must be float logits for DeepStream's parser")
    tail = [helper.make_node("Softmax", [output_name], [PROBS_OUTPUT], axis=1, name="edgeseg_softmax")]
    if elem_type == TensorProto.FLOAT16:
        # nvinfer's parser reads FP32 only: softmax in the graph's precision, then widen.
        tail[0].output[0] = f"{PROBS_OUTPUT}__fp16"
        tail.append(
            helper.make_node(
                "Cast", [tail[0].output[0]], [PROBS_OUTPUT], to=TensorProto.FLOAT, name="edgeseg_probs_fp32"
            )
        )
    probs = onnx.ValueInfoProto()
    probs.CopyFrom(old)
    probs.name = PROBS_OUTPUT
    probs.type.tensor_type.elem_type = TensorProto.FLOAT
    graph.output.remove(old)
    graph.output.append(probs)
    # Nodes must stay topologically sorted: the Mul first, the Softmax (and Cast) last.
    nodes = new_nodes + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    with atomic_write(dst) as f:
        f.write(model.SerializeToString())


def export_deepstream(
    build_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    gie_unique_id: int = 1,
    threshold: float = 0.0,
    gpu_id: int = 0,
) -> DeepStreamExport:
    """Write an nvinfer configuration, its graph and labels for a build.

    Args:
        build_dir: the build (``engines/<name>``).
        out_dir: destination folder (created if missing).
        name: base name of the files (letters, digits, ``_.-``; see :func:`edgeseg._names.safe_name`).
            Defaults to the build directory's name.
        precision: which of the build's graphs. Defaults to the build's own.
        batch_size: nvinfer ``batch-size``. Defaults to the graph's static batch, else 1.
        gie_unique_id: nvinfer ``gie-unique-id``. Defaults to 1.
        threshold: ``segmentation-threshold`` on probabilities (pixels whose best class stays at or
            below it get class -1). Defaults to 0.0.
        gpu_id: nvinfer ``gpu-id``. Defaults to 0.

    Raises:
        EdgesegError: the build's graph outputs labels (``--output argmax``) instead of logits, a bad
            threshold or name, a batch size the graph cannot take, or a card whose layout is nhwc.
    """
    # The name is part of file names in out_dir: it must not reach outside it.
    name = safe_name(name or Path(build_dir).resolve().name, "DeepStream name")
    artifacts = BuildArtifacts.from_dir(build_dir)
    card = artifacts.card
    card.require_input("export-deepstream", str(artifacts.root / CARD_FILE), any_channels=True)
    precision = Precision.parse(precision) if precision else artifacts.default_precision()
    graph = artifacts.onnx_for(precision)
    if graph is None:
        raise EdgesegError(f"{artifacts.root}: no {precision} ONNX graph (have {artifacts.precisions()})")
    if not 0.0 <= threshold < 1.0:
        raise EdgesegError(
            f"segmentation threshold must be in [0, 1) (it compares probabilities), got {threshold}"
        )
    inputs, outputs = onnx_io(artifacts.verify(graph))
    if len(inputs) != 1 or len(inputs[0].dims) != 4:
        raise EdgesegError(
            f"{graph}: expected one (N, 3, H, W) input, got {[(t.name, t.dims) for t in inputs]}"
        )
    logits = next((o for o in outputs if len(o.dims) == 4), None)
    if logits is None:
        raise EdgesegError(
            f"{graph}: DeepStream's segmentation parser needs per-class scores (N, K, H, W); this "
            "graph outputs labels (built with --output argmax). Rebuild with --output logits"
        )
    image = inputs[0]
    n, c, h, w = image.dims
    if logits.dims[1] != card.num_classes:
        raise EdgesegError(f"{graph}: output has {logits.dims[1]} classes, card.json says {card.num_classes}")
    if isinstance(n, int) and batch_size not in (None, n):
        raise EdgesegError(f"{graph}: static batch {n}, cannot serve batch-size {batch_size}")
    batch = n if isinstance(n, int) else (batch_size or 1)

    out = Path(out_dir)
    # The card's statistics are per RGB channel; nvinfer's offsets follow the network's channels.
    order = RGB_INDEX[card.channels]
    scale, offsets, factors = deepstream_normalisation(tuple(card.mean[i] for i in order),
                                                       tuple(card.std[i] for i in order))
    onnx_path = out / f"{name}.deepstream.onnx"
    fold_and_softmax(graph, onnx_path, factors, image.name, logits.name)
    labels_path = out / "labels.txt"
    names = (
        card.class_names
        if len(card.class_names) == card.num_classes
        else [f"class_{i}" for i in range(card.num_classes)]
    )
    with atomic_write(labels_path, "w") as f:
        f.write("\n".join(names) + "\n")

    engine_name = f"{onnx_path.name}_b{batch}_gpu{gpu_id}_{precision}.engine"
    properties = {
        "gpu-id": str(gpu_id),
        "net-scale-factor": _num(scale),
        "offsets": ";".join(_num(o) for o in offsets),
        "model-color-format": "1" if card.channels == "bgr" else "0",  # the network's channel order
        "onnx-file": onnx_path.name,
        "model-engine-file": engine_name,
        "labelfile-path": labels_path.name,
        "infer-dims": f"{c};{h};{w}",
        "batch-size": str(batch),
        "network-mode": str(NETWORK_MODES[precision]),
        "network-type": "2",
        "process-mode": "1",
        "num-detected-classes": str(card.num_classes),
        "output-blob-names": PROBS_OUTPUT,
        "segmentation-threshold": _num(threshold),
        "segmentation-output-order": "0",  # NCHW
        "maintain-aspect-ratio": "0",  # the model was trained on plain resizes
        "interval": "0",
        "gie-unique-id": str(gie_unique_id),
    }
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep keys' case
    parser["property"] = properties
    text = io.StringIO()
    parser.write(text, space_around_delimiters=False)  # key=value, as DeepStream's samples write
    config_path = out / f"config_infer_{name}.txt"
    header = (
        f"# Written by edgeseg export-deepstream from {artifacts.root} ({precision}, {graph.name}).\n"
        f"# The graph folds the per-channel std {[card.std[i] for i in order]} ({card.channels.upper()}) "
        "into a leading Mul "
        f"{[round(f, 6) for f in factors]} and ends in a softmax; nvinfer builds and caches\n"
        f"# {engine_name} from it on first start.\n"
    )
    with atomic_write(config_path, "w") as f:
        f.write(header + text.getvalue())
    notes = [
        f"nvinfer will build its own engine from {onnx_path.name} on first start "
        "(the build's engine was made from the unmodified graph)"
    ]
    if precision == "int8":
        notes.append("INT8 comes from the graph's Q/DQ nodes (explicit quantization): no int8-calib-file")
    return DeepStreamExport(config_path, onnx_path, labels_path, properties, factors, notes)


def _num(value: float) -> str:
    return f"{value:.10g}"
