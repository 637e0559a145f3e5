"""Memory of the precision passes: repeated modelopt calls stay flat, calibration stays bounded."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg._memory import PeakRss, rss_mb
from edgeseg.export import ExportConfig, export_onnx, simplify_onnx
from edgeseg.precision.int8 import quantize_int8, write_calibration_cache
from edgeseg.precision.ranges import collect_ranges


def _rss_mib() -> float:
    """Current resident memory after freeing what Python and malloc can give back."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed pages otherwise
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def _convs(channels: int, depth: int, kernel: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, channels, 1)]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(channels, channels, kernel, padding=kernel // 2), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Conv2d(channels, 3, 1)).eval()


def _export(net: torch.nn.Module, folder: Path, size: tuple[int, int]) -> Path:
    export_onnx(net, folder / "m.onnx", ExportConfig(input_size=size))
    simplify_onnx(folder / "m.onnx", folder / "m.sim.onnx")
    return folder / "m.sim.onnx"


def test_repeated_quantize_keeps_rss_flat(tmp_path: Path) -> None:
    # ~30 MB of weights: before the fix every call kept one more copy of the model.
    sim = _export(_convs(384, 6, 3), tmp_path, (32, 32))
    model_mib = sim.stat().st_size / 2**20
    assert model_mib > 25
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    write_calibration_cache(tmp_path / "c.cache", collect_ranges(sim, x, "max"))
    rss = []
    for _ in range(5):
        quantize_int8(sim, tmp_path / "q.onnx", calibration_cache=tmp_path / "c.cache", sample=x[:1])
        rss.append(_rss_mib())
    from modelopt.onnx.quantization.graph_utils import has_path_type

    assert all(not d for d in has_path_type.__defaults__ if isinstance(d, list))
    # After the first call (imports, caches), three more calls grow RSS by less than one model.
    assert rss[-1] - rss[1] < model_mib, rss


@pytest.mark.skipif(rss_mb() is None, reason="needs Linux /proc to sample resident memory")
def test_streaming_calibration_peak_is_bounded(tmp_path: Path) -> None:
    # 9 activations of 36 MiB (64 channels at 384x384; 1x1 convs, so no im2col workspace): 324 MiB
    # exposed all at once. Tensors above glibc's largest mmap threshold (32 MiB) are returned to the
    # system when freed, so RSS shows what is alive, not what malloc keeps for reuse.
    sim = _export(_convs(64, 4, 1), tmp_path, (384, 384))
    images = np.random.default_rng(0).normal(size=(2, 3, 384, 384)).astype(np.float32)
    peaks, ranges = {}, {}
    for label, budget in (("all at once", 2**40), ("streamed", 40 * 2**20)):
        base = _rss_mib()
        with PeakRss(interval=0.002) as rss:
            ranges[label] = collect_ranges(sim, images, "max", max_bytes=budget)
        peaks[label] = rss.peak_mib - base
    assert ranges["streamed"] == ranges["all at once"]
    assert peaks["all at once"] > 324, peaks
    # Streaming must keep at least half of the 324 MiB of activations from ever coexisting (what
    # the allocator keeps around besides varies from run to run, so the margin is absolute).
    assert peaks["all at once"] - peaks["streamed"] > 324 / 2, peaks


def test_cached_calibration_gives_the_graph_of_modelopts_own_pass(
        tiny_sim: Path, images: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    import onnx
    from onnxruntime.quantization import calibrate

    from edgeseg.precision import int8

    cache = tmp_path / "c.cache"
    write_calibration_cache(cache, collect_ranges(tiny_sim, images[:4], "max"))
    installed = calibrate.create_calibrator
    quantize_int8(tiny_sim, tmp_path / "cached.onnx", calibration_cache=cache, sample=images[:1])
    assert calibrate.create_calibrator is installed  # ONNX Runtime's factory is put back
    monkeypatch.setattr(int8, "_cached_calibration", lambda amax: contextlib.nullcontext())
    quantize_int8(tiny_sim, tmp_path / "run.onnx", calibration_cache=cache, sample=images[:1])
    cached, run = onnx.load(tmp_path / "cached.onnx"), onnx.load(tmp_path / "run.onnx")
    assert cached.graph.SerializeToString() == run.graph.SerializeToString()
