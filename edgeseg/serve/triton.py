"""Export a build as a Triton Inference Server model repository entry.

Layout written (Triton "Model Repository" docs)::

    <repo>/<name>/config.pbtxt
    <repo>/<name>/1/model.plan     TensorRT engine (platform "tensorrt_plan"), only if the build has one
    <repo>/<name>/1/model.onnx     or the ONNX graph (platform "onnxruntime_onnx")
    <repo>/<name>/card.json        the model card, for clients (mean/std, layout, channels, classes)

Configuration fields follow Triton's ``ModelConfig`` protobuf: ``name``, ``platform``,
``max_batch_size``, ``input``/``output`` (``name``, ``data_type``, ``dims``), ``dynamic_batching``
(``preferred_batch_size``, ``max_queue_delay_microseconds``) and ``instance_group``. With
``max_batch_size > 0`` Triton owns the batch dimension, so ``dims`` omit it; a graph with a static
batch dimension is exported with ``max_batch_size: 0`` and its full shape instead (Triton cannot
batch it).

The engine is copied as built, never fabricated: a build without ``model.<precision>.engine`` can
only be exported for ONNX Runtime.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._io import atomic_write, write_json
from edgeseg._names import safe_name
from edgeseg.build_folder import BuildArtifacts, Precision
from edgeseg.errors import EdgesegError
from edgeseg.export.graph_io import OnnxTensor, onnx_io
from edgeseg.serve._pbtxt import Enum, dumps

__all__ = ["TritonExport", "export_triton", "TRITON_DTYPES", "DEFAULT_MAX_BATCH"]

#: ONNX element type → Triton data type.
TRITON_DTYPES = {
    "FLOAT": "TYPE_FP32",
    "FLOAT16": "TYPE_FP16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8",
    "INT8": "TYPE_INT8",
    "BOOL": "TYPE_BOOL",
}
DEFAULT_MAX_BATCH = 8


@dataclass
class TritonExport:
    """What :func:`export_triton` wrote.

    Attributes:
        model_dir: ``<repo>/<name>``.
        config_path: its ``config.pbtxt``.
        model_path: the copied engine or ONNX file.
        config: the configuration as a dict (what ``config.pbtxt`` holds).
        platform: ``tensorrt_plan`` or ``onnxruntime_onnx``.
        precision: the build precision exported.
        notes: things a deployer should know (e.g. a static batch Triton cannot batch).
    """

    model_dir: Path
    config_path: Path
    model_path: Path
    config: dict[str, Any]
    platform: str
    precision: str
    notes: list[str] = field(default_factory=list)


def export_triton(
    build_dir: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    name: str | None = None,
    backend: str = "auto",
    precision: str | None = None,
    max_batch: int | None = None,
    preferred_batch: list[int] | None = None,
    queue_delay_us: int = 100,
    instances: int = 1,
    version: int = 1,
) -> TritonExport:
    """Write ``<repo>/<name>/`` for Triton from a build directory.

    Args:
        build_dir: the build (``engines/<name>``).
        repo: the model repository root (created if missing).
        name: model name in Triton, and its folder (letters, digits, ``_.-``; see
            :func:`edgeseg._names.safe_name`). Defaults to the build directory's name.
        backend: ``"tensorrt"``, ``"onnxruntime"`` or ``"auto"`` (the engine when the build has
            one, else ONNX). Defaults to auto.
        precision: which of the build's precisions. Defaults to the build's own.
        max_batch: ``max_batch_size`` for a dynamic-batch graph. Defaults to the engine profile's
            max batch, else 8. Must stay 0/unset for a static-batch graph.
        preferred_batch: dynamic batcher's preferred sizes. Defaults to the engine profile's
            optimum batch when known, else ``[max_batch]``.
        queue_delay_us: dynamic batcher's ``max_queue_delay_microseconds``. Defaults to 100.
        instances: model instances on the GPU (``instance_group.count``). Defaults to 1.
        version: the version sub-directory. Defaults to 1.

    Raises:
        EdgesegError: no engine for ``backend="tensorrt"``, an output Triton cannot type, a batch
            setting the graph cannot honour, or a bad name.
    """
    # The name is the model's folder in the repository: it must not reach outside it.
    name = safe_name(name or Path(build_dir).resolve().name, "Triton model name", parent=repo)
    artifacts = BuildArtifacts.from_dir(build_dir)
    # Triton feeds what clients send: the card copied beside the model tells them the input's layout
    # and channel order, and the config's dims are the graph's own.
    card = artifacts.card
    if backend not in ("auto", "tensorrt", "onnxruntime"):
        raise EdgesegError(f"backend must be auto, tensorrt or onnxruntime, got {backend!r}")
    precision = Precision.parse(precision) if precision else artifacts.default_precision()
    engine = artifacts.engines.get(precision)
    graph = artifacts.onnx_for(precision)
    if backend == "tensorrt" and engine is None:
        raise EdgesegError(
            f"{artifacts.root}: no model.{precision}.engine to serve with TensorRT; build it on the "
            f"serving GPU (edgeseg build --from-onnx {artifacts.root}) or export --backend onnxruntime"
        )
    use_engine = engine is not None and backend in ("auto", "tensorrt")
    if graph is None:
        raise EdgesegError(f"{artifacts.root}: no {precision} ONNX graph (needed for the I/O description)")
    if use_engine and engine is not None:
        artifacts.verify(engine)
    # The engine was built from this graph, so its I/O names, types and dims are the engine's too.
    inputs, outputs = onnx_io(artifacts.verify(graph))
    profile = _engine_batch_profile(artifacts.engine_metadata(precision) if use_engine else None)
    static_batch = _static_batch(inputs)
    if static_batch is not None:
        if max_batch:
            raise EdgesegError(
                f"{graph.name} has a static batch of {static_batch}; Triton cannot batch it "
                "(rebuild with a batch profile, e.g. edgeseg build --shapes 1,4,8)"
            )
        max_batch_size = 0
    else:
        max_batch_size = max_batch or (profile[2] if profile else DEFAULT_MAX_BATCH)
        if profile and max_batch_size > profile[2]:
            raise EdgesegError(
                f"--max-batch {max_batch_size} exceeds the engine's optimization profile "
                f"(max batch {profile[2]})"
            )
    if max_batch_size < 0:
        raise EdgesegError(f"max batch must be >= 0, got {max_batch_size}")

    platform = "tensorrt_plan" if use_engine else "onnxruntime_onnx"
    config: dict[str, Any] = {
        "name": name,
        "platform": platform,
        "max_batch_size": max_batch_size,
        "input": [_tensor_config(t, batched=max_batch_size > 0) for t in inputs],
        "output": [_tensor_config(t, batched=max_batch_size > 0) for t in outputs],
    }
    if max_batch_size > 0:
        preferred = preferred_batch or ([profile[1]] if profile else [max_batch_size])
        if any(not 0 < p <= max_batch_size for p in preferred):
            raise EdgesegError(f"preferred batch sizes {preferred} must lie in 1..{max_batch_size}")
        config["dynamic_batching"] = {
            "preferred_batch_size": sorted(set(preferred)),
            "max_queue_delay_microseconds": int(queue_delay_us),
        }
    config["instance_group"] = [{"count": int(instances), "kind": Enum("KIND_GPU")}]

    model_dir = Path(repo) / name
    source = engine if use_engine and engine is not None else graph
    model_path = model_dir / str(version) / ("model.plan" if use_engine else "model.onnx")
    _copy(source, model_path)
    config_path = model_dir / "config.pbtxt"
    header = (
        f"# Written by edgeseg export-triton from {artifacts.root} ({precision}, {source.name}).\n"
        f"# Inputs are normalised float images, {card.layout.upper()} {card.channels.upper()}: see card.json "
        "for mean/std (per RGB channel, 0..1 pixels).\n"
    )
    with atomic_write(config_path, "w") as f:
        f.write(header + dumps(config) + "\n")
    write_json(model_dir / "card.json", card.to_dict())
    notes = []
    if max_batch_size == 0:
        notes.append(
            f"{graph.name} has a static batch of {static_batch}, so Triton cannot batch requests "
            "(max_batch_size 0); rebuild with a batch profile (edgeseg build --shapes 1,4,8) for "
            "dynamic batching"
        )
    return TritonExport(model_dir, config_path, model_path, config, platform, precision, notes)


def _static_batch(inputs: list[OnnxTensor]) -> int | None:
    first = inputs[0].dims[0] if inputs and inputs[0].dims else None
    return first if isinstance(first, int) and first > 0 else None


def _engine_batch_profile(meta: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """``(min, opt, max)`` batch of the engine's optimization profile, from its metadata."""
    for entry in (meta or {}).get("inputs", []):
        profile = entry.get("profile") or {}
        try:
            return tuple(int(profile[k][0]) for k in ("min", "opt", "max"))  # type: ignore[return-value]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return None


def _tensor_config(t: OnnxTensor, batched: bool) -> dict[str, Any]:
    if t.elem_type not in TRITON_DTYPES:
        raise EdgesegError(f"tensor '{t.name}' has type {t.elem_type}, which Triton configs cannot express")
    dims = t.dims[1:] if batched else t.dims
    return {
        "name": t.name,
        "data_type": Enum(TRITON_DTYPES[t.elem_type]),
        "dims": [d if isinstance(d, int) and d > 0 else -1 for d in dims],
    }


def _copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)
