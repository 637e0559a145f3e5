"""The one place an artifact becomes a runner, and where ONNX Runtime's session options are decided.

=====================  ==============================================================
artifact               runner
=====================  ==============================================================
``*.pt`` bundle        :class:`~edgeseg.runners.torch.TorchRunner` (FP32 reference)
``*.onnx`` (any)       :class:`~edgeseg.runners.onnxrt.OnnxrtRunner`, options below
``*.engine``           :class:`~edgeseg.runners.trt.TrtRunner`
=====================  ==============================================================

The runtime (:mod:`edgeseg.runtime.backends`), validation, the benchmark and the accuracy guard all
open artifacts here, so a graph is judged under the same ONNX Runtime settings everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeseg.build_folder import Precision
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner

__all__ = ["EVALUATION_MODE", "OrtSettings", "onnx_runner", "ort_has_cuda", "ort_settings", "runner_for"]

#: What validation reports and the guard's figures mean on a machine without TensorRT (ort_settings).
EVALUATION_MODE = ("ONNX Runtime on this machine; on the CPU, Q/DQ graphs run as float fake-quantization "
                   "(ORT's Q/DQ fusion into integer kernels off, its float optimizations on) and FP16 "
                   "graphs with graph optimizations disabled; not as TensorRT runs them")


def ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@dataclass(frozen=True)
class OrtSettings:
    """How ONNX Runtime runs one graph.

    Attributes:
        graph_optimization: ``"all"`` or ``"disabled"`` (see :func:`ort_settings`).
        session_config: ``SessionOptions`` entries.
        memory_arena: ONNX Runtime's CPU arena, which keeps each session's largest activations.
        qdq_fusion: Q/DQ pairs fused into ONNX Runtime's own integer kernels.
    """

    graph_optimization: str
    session_config: dict[str, str]
    memory_arena: bool = True
    qdq_fusion: bool = True


def ort_settings(precision: Precision | str, *, gpu: bool, side_by_side: bool = False) -> OrtSettings:
    """ONNX Runtime settings for a graph of ``precision``.

    * On the CPU, Q/DQ graphs run as float fake-quantization: every QuantizeLinear/DequantizeLinear
      pair is evaluated in float as written, which is how the accuracy guard and validation judge
      them. ORT's Q/DQ fusions (``session.disable_quant_qdq``) are off, because they would run its
      own integer kernels (QLinearConv, u8 requantization), which TensorRT never runs: on the demo's
      held-out images they cost 0.25 points of agreement that TensorRT's kernels need not lose. Its
      float optimizations (constant folding, Conv + activation fusion, cast elimination, blocked
      layouts) stay on: they only move float and FP16 rounding, as TensorRT's own fusions do, and
      halve the time of a Q/DQ graph (demo: 33 -> 17 ms per image, 99.66 -> 99.64 % agreement;
      ``benchmarks/bench_ort_modes.py``).
    * FP16 graphs on the CPU run with graph optimizations disabled: ORT has no FP16 CPU kernels for
      most ops and casts around each one, so every tensor is rounded to FP16 between layers as
      TensorRT stores it; its cast elimination would keep them in FP32 and flatter the graph.
      No speed target rests on FP16 graphs on the CPU.
    * FP32 graphs, and every graph on the CUDA provider, use all optimizations.
    * ORT's CPU worker threads busy-wait between runs by default. In a pipeline, and on shared
      CPUs, that spinning steals the cores that decoding and pre/postprocessing need: measured on 2
      cores, torch postprocessing ran 5x slower beside a spinning session, and ORT itself about 2x
      slower. So CPU sessions do not spin.
    * ``side_by_side`` sessions (validation and the accuracy guard hold several graphs, or run one
      many times between other work) give up ORT's CPU memory arena: each arena keeps its session's
      largest activations alive, which at 1024x2048 costs gigabytes per graph.
    """
    p = Precision.parse(precision)
    level = "disabled" if not gpu and p is Precision.FP16 else "all"
    return OrtSettings(level, {} if gpu else {"session.intra_op.allow_spinning": "0"},
                       memory_arena=not side_by_side, qdq_fusion=gpu or p is not Precision.INT8)


def onnx_runner(model: str | os.PathLike[str] | bytes, precision: Precision | str, *,
                threads: int | None = None, name: str | None = None,
                side_by_side: bool = False) -> BaseRunner:
    """An inactive ONNX Runtime runner for a graph (file or bytes), with :func:`ort_settings`."""
    from edgeseg.runners.onnxrt import OnnxrtRunner

    settings = ort_settings(precision, gpu=ort_has_cuda(), side_by_side=side_by_side)
    return OnnxrtRunner(model, graph_optimization=settings.graph_optimization,
                        session_config=settings.session_config, intra_op_threads=threads, name=name,
                        memory_arena=settings.memory_arena, qdq_fusion=settings.qdq_fusion)


def runner_for(
    artifact: str | os.PathLike[str],
    precision: Precision | str | None = None,
    *,
    threads: int | None = None,
    plugin_libs: Sequence[str | os.PathLike[str]] = (),
    device: str | None = None,
    name: str | None = None,
    side_by_side: bool = False,
) -> BaseRunner:
    """An inactive runner for ``artifact``, chosen by its kind.

    Args:
        artifact: a ``.pt`` bundle, an ``.onnx`` graph or a TensorRT ``.engine``.
        precision: the ONNX graph's precision. Defaults to what its nodes hold.
        threads: ONNX Runtime intra-op threads. Defaults to ONNX Runtime's choice.
        plugin_libs: TensorRT plugin libraries an engine needs. Defaults to none.
        device: torch runner: ``"cpu"`` or ``"cuda"``. Defaults to CUDA when torch sees one.
        name: the runner's display name. Defaults to the backend and the file name.
        side_by_side: an ONNX graph opened beside others (validation, the guard): see
            :func:`ort_settings`. Defaults to False.

    Raises:
        EdgesegError: an unknown kind of file.
    """
    path = Path(artifact)
    if path.suffix == ".onnx":
        if precision is None:
            import onnx

            from edgeseg.build_folder import graph_precision

            precision = graph_precision(onnx.load(os.fspath(path), load_external_data=False))
        return onnx_runner(path, precision, threads=threads, name=name, side_by_side=side_by_side)
    if path.suffix == ".engine":
        from edgeseg.runners.trt import TrtRunner

        return TrtRunner(path, plugin_libs=plugin_libs)
    if path.suffix == ".pt":
        import torch

        from edgeseg.checkpoint import load_model
        from edgeseg.runners.torch import TorchRunner

        model, _ = load_model(path)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return TorchRunner(model, device=dev, name=name or f"torch:{path.name}")
    raise EdgesegError(f"{path}: not a runnable artifact (expected .pt, .onnx or .engine)")
