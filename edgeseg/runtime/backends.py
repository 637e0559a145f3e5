"""Choosing and opening the runner a :class:`~edgeseg.Segmenter` uses.

``backend="auto"`` tries, in order, and records why each candidate was skipped:

1. **tensorrt**: the build's engine for the chosen precision, when ``tensorrt`` is importable and
   the engine's metadata matches this machine (the TensorRT runner refuses a mismatched engine
   with an :class:`~edgeseg.errors.EdgesegError` instead of crashing inside TensorRT);
2. **onnxruntime**: the ONNX graph of that precision, on the CUDA provider when this onnxruntime
   has it, else on the CPU, with the session options of :func:`edgeseg.runners.loader.ort_settings`;
3. **torch**: the PyTorch bundle (``.pt``), optionally with the fused DDC op (``fused=True``).

Forcing a backend (``backend="tensorrt"``) skips the others and turns the reason into an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.build_folder import BuildArtifacts, Precision
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner

__all__ = ["BACKENDS", "OpenedBackend", "open_backend", "cuda_available"]

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


@dataclass
class OpenedBackend:
    """A runner (not yet activated) plus what the Segmenter needs to drive it.

    Attributes:
        runner: the backend.
        card: the model card (preprocessing, classes, palette).
        backend: ``"tensorrt"``, ``"onnxruntime"`` or ``"torch"``.
        precision: the precision of the artifact it runs.
        device: where inputs should live for this runner (``"cuda"`` or ``"cpu"``).
        source: the file the runner executes.
        skipped: ``{backend: reason}`` for candidates ``auto`` passed over.
    """

    runner: BaseRunner
    card: ModelCard
    backend: str
    precision: Precision
    device: str
    source: Path
    skipped: dict[str, str] = field(default_factory=dict)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (pre/postprocessing then run on it)."""
    import torch

    return torch.cuda.is_available()


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
        file_precision = artifacts.precision_of(p)
        kind = "tensorrt" if p.suffix == ".engine" else "onnxruntime"
        if backend not in ("auto", kind):
            raise EdgesegError(f"{p}: a {p.suffix} file runs on {kind}, not {backend}")
        opener = _open_trt if kind == "tensorrt" else _open_ort
        return opener(artifacts.verify(p), artifacts.card, file_precision, skipped={})
    artifacts = BuildArtifacts.from_dir(p)
    precision = Precision.parse(precision) if precision else artifacts.default_precision()
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
                return _open_trt(artifacts.verify(engine), artifacts.card, precision, skipped=skipped)
            if kind == "onnxruntime":
                graph = artifacts.onnx_for(precision)
                if graph is None:
                    raise EdgesegError(f"no {precision} ONNX graph in {p}")
                return _open_ort(artifacts.verify(graph), artifacts.card, precision, skipped=skipped)
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


def _open_trt(engine: Path, card: ModelCard, precision: Precision, skipped: dict[str, str]) -> OpenedBackend:
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


def _open_ort(graph: Path, card: ModelCard, precision: Precision, skipped: dict[str, str]) -> OpenedBackend:
    from edgeseg.runners.loader import ort_has_cuda, runner_for

    runner = runner_for(graph, precision)
    # ORT takes host arrays; preprocessing still runs on the GPU when torch has one, and only the
    # network input (smaller than the frame) crosses to the host.
    device = "cuda" if ort_has_cuda() and cuda_available() else "cpu"
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
    return OpenedBackend(runner, card, "torch", Precision.FP32, dev, checkpoint, skipped)


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
