"""Choosing and opening the runner a :class:`~edgeseg.Segmenter` uses.

``backend="auto"`` tries, in order, and records why each candidate was skipped:

1. **tensorrt**: the build's engine for the chosen precision, when ``tensorrt`` is importable and
   the engine's metadata matches this machine (the TensorRT runner refuses a mismatched engine
   with an :class:`~edgeseg.errors.EdgesegError` instead of crashing inside TensorRT);
2. **onnxruntime**: the ONNX graph of that precision, on the CUDA provider when this onnxruntime
   has it, else on the CPU. Q/DQ and FP16 graphs run with graph optimisations disabled on the CPU:
   ORT's CPU fusions would otherwise rewrite them into something TensorRT never executes;
3. **torch**: the PyTorch bundle (``.pt``), optionally with the fused DDC op (``fused=True``).

Forcing a backend (``backend="tensorrt"``) skips the others and turns the reason into an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner
from edgeseg.runtime.artifacts import BuildArtifacts

__all__ = ["BACKENDS", "OpenedBackend", "open_backend", "cuda_available", "ort_session_config"]

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


@dataclass
class OpenedBackend:
    """A runner (not yet activated) plus what the Segmenter needs to drive it.

    Attributes:
        runner: the backend.
        card: the model card (preprocessing, classes, palette).
        backend: ``"tensorrt"``, ``"onnxruntime"`` or ``"torch"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        device: where inputs should live for this runner (``"cuda"`` or ``"cpu"``).
        source: the file the runner executes.
        skipped: ``{backend: reason}`` for candidates ``auto`` passed over.
    """

    runner: BaseRunner
    card: ModelCard
    backend: str
    precision: str
    device: str
    source: Path
    skipped: dict[str, str] = field(default_factory=dict)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (pre/postprocessing then run on it)."""
    import torch

    return torch.cuda.is_available()


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def open_backend(
    path: str | os.PathLike[str],
    backend: str = "auto",
    *,
    precision: str | None = None,
    fused: bool = False,
    device: str | None = None,
) -> OpenedBackend:
    """Open the best (or the requested) backend for a build directory or model file.

    Args:
        path: a build directory, a ``.engine``/``.onnx`` file inside one (its ``card.json`` is read),
            or a ``.pt`` bundle.
        backend: ``"auto"``, ``"tensorrt"``, ``"onnxruntime"`` or ``"torch"``. Defaults to auto.
        precision: which of the build's precisions to run. Defaults to the one the build was asked
            for (``build.json``), else the lowest present.
        fused: torch backend only: run ``model.fuse()`` (the fused DDC op). Defaults to False.
        device: torch backend only: ``"cpu"`` or ``"cuda"``. Defaults to CUDA when available.

    Raises:
        EdgesegError: nothing runnable, or the forced backend cannot run (with the reason).
    """
    if backend not in BACKENDS:
        raise EdgesegError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    p = Path(path)
    if p.suffix == ".pt":
        if backend not in ("auto", "torch"):
            raise EdgesegError(f"{p}: a PyTorch bundle runs on the torch backend only, not {backend}")
        return _open_torch(p, fused=fused, device=device, skipped={})
    if p.is_file() and p.suffix in (".onnx", ".engine"):
        artifacts = BuildArtifacts.from_dir(p.parent)
        file_precision = _precision_of(p, artifacts)
        kind = "tensorrt" if p.suffix == ".engine" else "onnxruntime"
        if backend not in ("auto", kind):
            raise EdgesegError(f"{p}: a {p.suffix} file runs on {kind}, not {backend}")
        opener = _open_trt if kind == "tensorrt" else _open_ort
        return opener(p, artifacts.card, file_precision, skipped={})
    artifacts = BuildArtifacts.from_dir(p)
    precision = precision or artifacts.default_precision()
    if precision not in artifacts.precisions():
        raise EdgesegError(f"{p}: no {precision} artifact (the build has {artifacts.precisions()})")
    skipped: dict[str, str] = {}
    order = ["tensorrt", "onnxruntime", "torch"] if backend == "auto" else [backend]
    for kind in order:
        try:
            if kind == "tensorrt":
                engine = artifacts.engines.get(precision)
                if engine is None:
                    raise EdgesegError(
                        f"no model.{precision}.engine in {p} (build it on the target "
                        f"with 'edgeseg build --from-onnx')"
                    )
                return _open_trt(engine, artifacts.card, precision, skipped=skipped)
            if kind == "onnxruntime":
                graph = artifacts.onnx_for(precision)
                if graph is None:
                    raise EdgesegError(f"no {precision} ONNX graph in {p}")
                return _open_ort(graph, artifacts.card, precision, skipped=skipped)
            checkpoint = artifacts.checkpoint()
            if checkpoint is None:
                raise EdgesegError(
                    f"{p}/build.json records no existing .pt checkpoint; pass the .pt bundle itself"
                )
            return _open_torch(checkpoint, fused=fused, device=device, skipped=skipped)
        except EdgesegError as e:
            if backend != "auto":
                raise
            skipped[kind] = str(e)
    details = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    raise EdgesegError(f"{p}: no backend can run this build ({details})")


def _precision_of(path: Path, artifacts: BuildArtifacts) -> str:
    for precision in ("fp32", "fp16", "int8"):
        if artifacts.engines.get(precision) == path or artifacts.onnx_for(precision) == path:
            return precision
    # A file outside the naming contract (e.g. copied by hand): trust its name, default to fp32.
    return next((q for q in ("int8", "fp16") if q in path.name), "fp32")


def _open_trt(engine: Path, card: ModelCard, precision: str, skipped: dict[str, str]) -> OpenedBackend:
    from edgeseg.trt import tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        raise EdgesegError(reason)
    from edgeseg.runners.trt import TrtRunner

    runner: BaseRunner = TrtRunner(engine)
    # Activation loads the engine and checks its metadata against this GPU and TensorRT version;
    # doing it here lets "auto" fall back when the engine was built for another target.
    runner.activate()
    # With a CUDA torch, frames are preprocessed on the GPU and handed to TensorRT in place;
    # without one, the runner uploads host arrays itself.
    device = "cuda" if cuda_available() else "cpu"
    return OpenedBackend(runner, card, "tensorrt", precision, device, engine, skipped)


def ort_session_config(on_gpu: bool) -> dict[str, str]:
    """ONNX Runtime session entries the runtime uses (the benchmark uses the same ones).

    ORT's CPU worker threads busy-wait between runs by default. In a pipeline, and on shared CPUs,
    that spinning steals the cores that decoding and pre/postprocessing need: measured on 2 cores,
    torch postprocessing ran 5x slower beside a spinning session, and ORT itself about 2x slower.
    """
    return {} if on_gpu else {"session.intra_op.allow_spinning": "0"}


def _open_ort(graph: Path, card: ModelCard, precision: str, skipped: dict[str, str]) -> OpenedBackend:
    from edgeseg.runners.onnxrt import OnnxrtRunner

    on_gpu = _ort_has_cuda()
    optimization = "all" if on_gpu or precision == "fp32" else "disabled"
    runner = OnnxrtRunner(graph, graph_optimization=optimization, session_config=ort_session_config(on_gpu))
    # ORT takes host arrays; preprocessing still runs on the GPU when torch has one, and only the
    # network input (smaller than the frame) crosses to the host.
    device = "cuda" if on_gpu and cuda_available() else "cpu"
    return OpenedBackend(runner, card, "onnxruntime", precision, device, graph, skipped)


def _open_torch(
    checkpoint: Path, *, fused: bool, device: str | None, skipped: dict[str, str]
) -> OpenedBackend:
    from edgeseg.checkpoint import load_model
    from edgeseg.runners.torch import TorchRunner

    model, card = load_model(checkpoint)
    dev = device or ("cuda" if cuda_available() else "cpu")
    if dev == "cuda" and not cuda_available():
        raise EdgesegError("device='cuda' asked for, but torch sees no CUDA device")
    if fused:
        model = _fuse(model, checkpoint, dev)
    runner = TorchRunner(model, device=dev, name=f"torch{'+fused' if fused else ''}:{checkpoint.name}")
    return OpenedBackend(runner, card, "torch", "fp32", dev, checkpoint, skipped)


def _fuse(model: Any, checkpoint: Path, device: str) -> Any:
    from edgeseg.ops import extension_error, has_kernel

    fuse = getattr(model, "fuse", None)
    if fuse is None:
        raise EdgesegError(
            f"{checkpoint}: {type(model).__name__} has no fused form (fused=True is for DBMSNet)"
        )
    if extension_error() is not None or not has_kernel(device):
        # The op would fall back to its (slower) PyTorch reference: not what fused=True asks for.
        why = extension_error() or f"built without a {device} kernel"
        raise EdgesegError(f"fused=True needs the compiled fused DDC op (edgeseg._C): {why}")
    return fuse()
