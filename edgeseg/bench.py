"""Latency, throughput, memory and power of every backend and precision of one model, side by side.

A *case* is one way of running the model: PyTorch eager FP32, PyTorch with the fused DDC op,
ONNX Runtime on each ONNX graph of a build, TensorRT on each engine, and, on a CUDA GPU only,
PyTorch FP16 + channels_last (+ CUDA graphs, + fused op). Each case is warmed up, then timed per
call (CUDA events on the GPU, ``time.perf_counter`` on the CPU) at each batch size.

Reported per case and batch: latency p50/p90/p99/mean (ms per call), throughput (frames/s =
batch / mean latency), peak host RSS (sampled during each case by
:class:`edgeseg._memory.PeakRss`, which leaves the kernel's own high-water mark alone; the
process-wide peak so far where ``/proc`` is missing, flagged as such), peak GPU memory (PyTorch's
allocator for torch cases; device-wide used memory for the others), and on Jetson the
average board power and energy per frame, sampled in a background thread during the timed loop.

Inputs are random normalised tensors of the model's input size: what is measured is the backend,
not decoding or preprocessing (``benchmarks/bench_runtime.py`` measures those).
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg._memory import PeakRss
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner

__all__ = [
    "BenchCase",
    "RunnerCase",
    "TorchGpuCase",
    "BenchResult",
    "BenchReport",
    "plan_cases",
    "run_benchmarks",
    "plot_results",
    "cpu_info",
    "machine_info",
    "time_calls",
]


# --- memory -------------------------------------------------------------------------------------
# --- cases ----------------------------------------------------------------------------------------
class BenchCase(ABC):
    """One way of running the model.

    Args:
        name: label in tables and plots, e.g. ``"onnxrt model.int8.onnx"``.
        backend: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        device: ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, name: str, backend: str, precision: str, device: str) -> None:
        self.name, self.backend, self.precision, self.device = name, backend, precision, device

    @abstractmethod
    def open(self) -> None:
        """Load the model/engine/session."""

    @abstractmethod
    def make_step(self, batch: int, input_size: tuple[int, int]) -> Callable[[], Any]:
        """A zero-argument callable running one inference on a fixed random batch.

        Raises:
            EdgesegError: this case cannot run that batch (e.g. a static-batch graph); the
                benchmark records the reason and moves on.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`open` loaded."""

    def torch_memory(self) -> bool:
        """Whether PyTorch's allocator holds this case's GPU memory (else device-wide use is reported)."""
        return False


class RunnerCase(BenchCase):
    """A case driven through the runner interface (ONNX Runtime, TensorRT, PyTorch on the CPU).

    Args:
        factory: builds the (inactive) runner.
    """

    def __init__(
        self, name: str, backend: str, precision: str, device: str, factory: Callable[[], BaseRunner]
    ) -> None:
        super().__init__(name, backend, precision, device)
        self.factory = factory
        self.runner: BaseRunner | None = None

    def open(self) -> None:
        self.runner = self.factory()
        self.runner.activate()

    def make_step(self, batch: int, input_size: tuple[int, int]) -> Callable[[], Any]:
        runner = self.runner
        if runner is None:
            raise EdgesegError(f"{self.name}: not opened")
        (meta,) = runner.get_input_metadata()
        n, *rest = meta.shape
        if isinstance(n, int) and n != batch:
            raise EdgesegError(f"static batch {n}")
        # Random pixels: timing needs the input's shape, not its channel order. A static shape is
        # taken as it is (an NHWC graph's too); dynamic sizes are filled in NCHW, edgeseg's contract.
        static = [d for d in rest if isinstance(d, int)]
        if len(static) == len(rest):
            shape = (batch, *static)
        else:
            hw = [d if isinstance(d, int) else fill for d, fill in zip(rest[1:], input_size, strict=True)]
            shape = (batch, 3, *hw)
        x: Any = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        if self.device == "cuda" and self.backend == "tensorrt":
            import torch

            x = torch.from_numpy(x).cuda()  # in place on the device: TensorRT reads it without a copy
        feed = {meta.name: x}
        return lambda: runner.infer(feed)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()
            self.runner = None

    def torch_memory(self) -> bool:
        return self.backend == "torch"


class TorchGpuCase(BenchCase):
    """PyTorch on a CUDA GPU, timed on the module call itself (no host copies).

    Args:
        factory: builds the eval-mode model (on the CPU).
        dtype: ``torch.float32`` or ``torch.float16``.
        channels_last: NHWC memory format.
        cuda_graph: capture one CUDA graph per batch size and replay it (removes per-op launch cost).
    """

    def __init__(
        self, name: str, factory: Callable[[], Any], *, dtype: Any, channels_last: bool, cuda_graph: bool
    ) -> None:
        import torch

        super().__init__(name, "torch", "fp16" if dtype == torch.float16 else "fp32", "cuda")
        self.factory, self.dtype, self.channels_last, self.cuda_graph = (
            factory,
            dtype,
            channels_last,
            cuda_graph,
        )
        self.model: Any = None

    def open(self) -> None:
        import torch

        self.model = self.factory().to(device="cuda", dtype=self.dtype).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def make_step(self, batch: int, input_size: tuple[int, int]) -> Callable[[], Any]:
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = torch.randn(batch, 3, *input_size, device="cuda", dtype=self.dtype).contiguous(memory_format=fmt)
        model = self.model
        if not self.cuda_graph:

            def step() -> Any:
                with torch.inference_mode():
                    return model(x)

            return step
        # Warm up on a side stream, then capture (the documented torch.cuda.graphs recipe).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            model(x)
        return graph.replay

    def close(self) -> None:
        import torch

        self.model = None
        torch.cuda.empty_cache()

    def torch_memory(self) -> bool:
        return True


# --- planning ------------------------------------------------------------------------------------
def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def plan_cases(
    target: str | os.PathLike[str],
    *,
    backends: Sequence[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    fused: bool = True,
    threads: int | None = None,
) -> tuple[list[BenchCase], dict[str, str], tuple[int, int] | None]:
    """Every case that applies to a build directory, a ``.pt`` bundle or an ``.onnx`` file.

    Args:
        target: what to benchmark.
        backends: restrict to these of ``torch``, ``onnxruntime``, ``tensorrt``. Defaults to all.
        checkpoint: the ``.pt`` bundle for the torch cases of a build directory. Defaults to the one
            ``build.json`` records.
        fused: include the fused-DDC-op torch cases. Defaults to True.
        threads: ONNX Runtime intra-op threads. Defaults to ONNX Runtime's choice.

    Returns:
        ``(cases, skipped, input_size)``: runnable cases, ``{case: reason}`` for those that cannot
        run here, and the model's ``(H, W)`` when a card tells it.
    """
    from edgeseg.build_folder import BuildArtifacts, Precision

    wanted = set(backends or ("torch", "onnxruntime", "tensorrt"))
    unknown = wanted - {"torch", "onnxruntime", "tensorrt"}
    if unknown:
        raise EdgesegError(f"unknown backends {sorted(unknown)}; choose from torch, onnxruntime, tensorrt")
    p = Path(target)
    cases: list[BenchCase] = []
    skipped: dict[str, str] = {}
    onnx_files: list[Path] = []
    engines: dict[Precision, Path] = {}
    bundle = Path(checkpoint) if checkpoint else None
    input_size = None
    if p.suffix == ".pt":
        bundle = p
    elif p.suffix == ".onnx":
        onnx_files = [p]
        if (p.parent / "card.json").is_file():
            input_size = BuildArtifacts.from_dir(p.parent).card.input_size
    else:
        artifacts = BuildArtifacts.from_dir(p)
        input_size = artifacts.card.input_size
        # Only what its build recorded, unchanged since (a hand-edited graph is refused).
        onnx_files = [artifacts.verify(p) for p in artifacts.onnx.values()]
        engines = {p: artifacts.verify(e) for p, e in artifacts.engines.items()}
        bundle = bundle or artifacts.checkpoint()
        if bundle is None and "torch" in wanted:
            skipped["torch"] = "no .pt bundle recorded in build.json (pass --checkpoint)"
    if bundle is not None and "torch" in wanted:
        from edgeseg.checkpoint import load_card

        input_size = input_size or load_card(bundle).input_size
        cases += _torch_cases(bundle, fused, skipped)
    if "onnxruntime" in wanted:
        cases += [_ort_case(f, threads) for f in onnx_files]
    if "tensorrt" in wanted:
        from edgeseg.trt import tensorrt_available

        trt_ok, trt_reason = tensorrt_available()
        for precision, engine in engines.items():
            name = f"tensorrt {engine.name}"
            if not trt_ok:
                skipped[name] = trt_reason
                continue
            cases.append(_artifact_case(engine, "tensorrt", precision.value, "cuda"))
    return cases, skipped, tuple(input_size) if input_size else None  # type: ignore[return-value]


def _artifact_case(path: Path, backend: str, precision: str, device: str,
                   threads: int | None = None) -> RunnerCase:
    from edgeseg.runners.loader import runner_for

    return RunnerCase(f"{'onnxrt' if backend == 'onnxruntime' else backend} {path.name}", backend, precision,
                      device, lambda: runner_for(path, precision, threads=threads))


def _ort_case(path: Path, threads: int | None) -> RunnerCase:
    import onnx

    from edgeseg.build_folder import graph_precision
    from edgeseg.runners.loader import ort_has_cuda

    precision = graph_precision(onnx.load(str(path), load_external_data=False)).value
    return _artifact_case(path, "onnxruntime", precision, "cuda" if ort_has_cuda() else "cpu", threads)


def _torch_cases(bundle: Path, fused: bool, skipped: dict[str, str]) -> list[BenchCase]:
    import torch

    from edgeseg.checkpoint import load_model
    from edgeseg.runners.torch import TorchRunner

    model, _ = load_model(bundle)

    def plain() -> Any:
        return copy.deepcopy(model)

    def fused_model() -> Any:
        return copy.deepcopy(model).fuse()

    fused_reason = (
        _fused_unavailable(model, "cuda" if _cuda() else "cpu") if fused else "disabled (--no-fused)"
    )
    if fused_reason:
        skipped["torch +fused"] = fused_reason
    if not _cuda():
        cases: list[BenchCase] = [
            RunnerCase("torch fp32", "torch", "fp32", "cpu", lambda: TorchRunner(plain()))
        ]
        if not fused_reason:
            cases.append(
                RunnerCase(
                    "torch fp32 +fused",
                    "torch",
                    "fp32",
                    "cpu",
                    lambda: TorchRunner(fused_model(), name="torch+fused"),
                )
            )
        skipped["torch fp16 / channels_last / CUDA graphs"] = "GPU only"
        return cases
    half = torch.float16
    cases = [
        TorchGpuCase("torch fp32 eager", plain, dtype=torch.float32, channels_last=False, cuda_graph=False),
        TorchGpuCase("torch fp16", plain, dtype=half, channels_last=False, cuda_graph=False),
        TorchGpuCase("torch fp16 +cl", plain, dtype=half, channels_last=True, cuda_graph=False),
        TorchGpuCase("torch fp16 +cl +graphs", plain, dtype=half, channels_last=True, cuda_graph=True),
    ]
    if not fused_reason:
        cases += [
            TorchGpuCase(
                "torch fp32 +fused", fused_model, dtype=torch.float32, channels_last=False, cuda_graph=False
            ),
            TorchGpuCase(
                "torch fp16 +cl +graphs +fused", fused_model, dtype=half, channels_last=True, cuda_graph=True
            ),
        ]
    return cases


def _fused_unavailable(model: Any, device: str) -> str | None:
    """Why the fused torch cases cannot run (None when they can)."""
    if not hasattr(model, "fuse"):
        return f"{type(model).__name__} has no fused form"
    from edgeseg.ops import extension_error, has_kernel

    if extension_error() is not None:
        return f"fused op not compiled: {extension_error()}"
    if not has_kernel(device):
        return f"fused op built without a {device} kernel"
    return None


# --- running -------------------------------------------------------------------------------------
@dataclass
class BenchResult:
    """One case at one batch size (``skipped`` holds the reason when it could not run)."""

    case: str
    backend: str
    precision: str
    device: str
    batch: int
    iters: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    throughput_fps: float = 0.0
    peak_rss_mb: float = 0.0
    rss_scope: str = "case"
    gpu_mem_mb: float | None = None
    power_mw: float | None = None
    energy_mj_per_frame: float | None = None
    power_source: str | None = None
    skipped: str | None = None


@dataclass
class BenchReport:
    """Everything one ``edgeseg bench`` run measured."""

    target: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    results: list[BenchResult]
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "machine": self.machine,
            "settings": self.settings,
            "results": [asdict(r) for r in self.results],
            "skipped": self.skipped,
        }


#: CPU features that decide which integer/float kernels ONNX Runtime and torch can use.
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "asimd", "asimddp")


def cpu_info() -> dict[str, Any]:
    """The CPU as the system reports it (``/proc/cpuinfo``), never typed in by hand.

    Returns:
        ``model`` (model name), ``vendor``, ``flags`` (the kernel-relevant subset of
        :data:`_CPU_FLAGS`) and ``cores`` (logical CPUs this process may use).
    """
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            wanted = key in ("model name", "vendor_id", "flags", "Features", "CPU implementer")
            if wanted and key not in fields:
                fields[key] = value.strip()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": fields.get("vendor_id") or fields.get("CPU implementer", ""),
        "flags": [f for f in _CPU_FLAGS if f in flags],
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def machine_info() -> dict[str, Any]:
    """CPU (read from the system), memory, GPU, and library versions, for the report."""
    import onnxruntime
    import torch

    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu["model"],
        "cpu_vendor": cpu["vendor"],
        "cpu_flags": cpu["flags"],
        "cores": cpu["cores"],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    from edgeseg.trt import tensorrt_available

    trt_ok, trt_version = tensorrt_available()
    info["tensorrt"] = trt_version if trt_ok else None
    return info


def time_calls(step: Callable[[], Any], iters: int, device: str) -> list[float]:
    """Seconds per call: CUDA events on the GPU (device time), perf_counter on the CPU."""
    times = []
    if device == "cuda":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(iters):
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return times


def _gpu_used_mb() -> float:
    import torch

    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def run_benchmarks(
    cases: Sequence[BenchCase],
    batches: Sequence[int],
    input_size: tuple[int, int],
    *,
    warmup: int = 5,
    iters: int = 20,
    power_source: Any = None,
    on_step: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Warm up and time every case at every batch size.

    Args:
        cases: from :func:`plan_cases`.
        batches: batch sizes, e.g. ``[1, 4]``.
        input_size: ``(H, W)`` for inputs whose spatial size the model leaves dynamic.
        warmup: untimed calls first (allocations, kernel selection, ORT arena growth).
        iters: timed calls.
        power_source: a :mod:`edgeseg.power` source (Jetson), sampled during the timed calls.
        on_step: progress callback, called with a description after each case/batch.

    Returns:
        One :class:`BenchResult` per case and batch, failures recorded in ``skipped``.
    """
    results = []
    for case in cases:
        gpu_baseline = _reset_memory_stats(case)
        with PeakRss() as rss:  # this case's own peak
            results += _run_case(case, batches, input_size, warmup, iters, power_source, on_step, rss,
                                 gpu_baseline)
    return results


def _run_case(case: BenchCase, batches: Sequence[int], input_size: tuple[int, int], warmup: int, iters: int,
              power_source: Any, on_step: Callable[[str], None] | None, rss: PeakRss,
              gpu_baseline: float | None) -> list[BenchResult]:
    results = []
    try:
        case.open()
    except EdgesegError as e:
        for batch in batches:
            results.append(BenchResult(case.name, case.backend, case.precision, case.device, batch,
                                       skipped=str(e)))
            if on_step is not None:
                on_step(f"{case.name} batch {batch}")
        return results
    try:
        for batch in batches:
            result = _measure(case, batch, input_size, warmup, iters, power_source)
            if result.skipped is None:
                result.peak_rss_mb = rss.peak_mib
                result.rss_scope = "case" if rss.scope == "step" else "process"
                if gpu_baseline is not None:
                    result.gpu_mem_mb = _gpu_memory_mb(case, gpu_baseline)
            results.append(result)
            if on_step is not None:
                on_step(f"{case.name} batch {batch}")
    finally:
        case.close()
    return results


def _reset_memory_stats(case: BenchCase) -> float | None:
    """Reset PyTorch's peak-memory counter; return device-wide used MiB before the case (GPU only)."""
    if case.device != "cuda":
        return None
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return _gpu_used_mb()


def _gpu_memory_mb(case: BenchCase, baseline: float) -> float:
    import torch

    if case.torch_memory():
        return torch.cuda.max_memory_allocated() / 2**20
    return _gpu_used_mb() - baseline  # TensorRT / ONNX Runtime allocate outside PyTorch


def _measure(
    case: BenchCase, batch: int, input_size: tuple[int, int], warmup: int, iters: int, power_source: Any
) -> BenchResult:
    from edgeseg.power import PowerSampler

    result = BenchResult(case.name, case.backend, case.precision, case.device, batch)
    try:
        step = case.make_step(batch, input_size)
        for _ in range(warmup):
            step()
        power = None
        if power_source is not None:
            with PowerSampler(power_source) as sampler:
                times = time_calls(step, iters, case.device)
            power = sampler.summary()
        else:
            times = time_calls(step, iters, case.device)
    except EdgesegError as e:
        result.skipped = str(e)
        return result
    ms = np.array(times) * 1000.0
    result.iters = iters
    result.latency_ms = {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
    }
    result.throughput_fps = batch * 1000.0 / result.latency_ms["mean"]
    if power is not None:
        result.power_mw = power.avg_total_mw
        result.power_source = power.source
        result.energy_mj_per_frame = power.energy_per_item_mj(sum(times), batch * iters)
    return result


def plot_results(results: Sequence[BenchResult], path: str | os.PathLike[str]) -> None:
    """Bar charts of p50 latency and throughput per case, one bar per batch size (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works headless, never opens a window
    import matplotlib.pyplot as plt

    from edgeseg._io import atomic_write

    ran = [r for r in results if r.skipped is None]
    if not ran:
        raise EdgesegError("nothing was measured; no plot to draw")
    names = list(dict.fromkeys(r.case for r in ran))
    batches = sorted({r.batch for r in ran})
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(names) + 2), constrained_layout=True)
    height = 0.8 / len(batches)
    for j, batch in enumerate(batches):
        by_case = {r.case: r for r in ran if r.batch == batch}
        ys = np.arange(len(names)) + j * height
        axes[0].barh(
            ys,
            [by_case[n].latency_ms["p50"] if n in by_case else 0 for n in names],
            height,
            label=f"batch {batch}",
        )
        axes[1].barh(
            ys,
            [by_case[n].throughput_fps if n in by_case else 0 for n in names],
            height,
            label=f"batch {batch}",
        )
    for ax, title in zip(axes, ("latency p50 (ms / call)", "throughput (frames / s)"), strict=True):
        ax.set_yticks(np.arange(len(names)) + height * (len(batches) - 1) / 2, names)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
