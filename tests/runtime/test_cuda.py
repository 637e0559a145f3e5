"""GPU paths of the runtime (marker ``cuda``): run on the lent GPU machine, skipped without CUDA.

Run by ``scripts/gpu_check.sh``; passed on an H200 on 2026-12-04 (docs/gpu-validation.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg import Segmenter
from edgeseg.bench import plan_cases, run_benchmarks
from edgeseg.runtime.frames import as_frame_batch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)"),
]


def test_device_frames_are_read_in_place_and_agree_with_host(rt_bundle: Path) -> None:
    frame = torch.randint(0, 256, (48, 80, 3), dtype=torch.uint8, device="cuda")
    groups, _ = as_frame_batch(frame, "cuda")
    assert groups[0].data_ptr() == frame.data_ptr()  # no copy, on the device
    with Segmenter.load(rt_bundle, device="cuda") as seg:
        on_device = seg(frame, output="torch", overlay=True)
        from_host = seg(frame.cpu().numpy())
    assert on_device.mask.is_cuda and on_device.overlay.is_cuda
    assert (on_device.mask.cpu().numpy() == from_host.mask).mean() > 0.999


def test_gpu_benchmark_cases(rt_bundle: Path) -> None:
    cases, _, size = plan_cases(rt_bundle, backends=["torch"])
    results = run_benchmarks(cases, [1, 2], size, warmup=2, iters=3)
    ran = {r.case for r in results if r.skipped is None}
    assert {"torch fp32 eager", "torch fp16", "torch fp16 +cl", "torch fp16 +cl +graphs"} <= ran
    assert all(r.gpu_mem_mb and r.gpu_mem_mb > 0 for r in results if r.skipped is None)
    assert all(np.isfinite(r.latency_ms["p50"]) for r in results if r.skipped is None)
