"""edgeseg bench: case planning, timing statistics, memory probes, the JSON/PNG report and the command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeseg._memory import PeakRss, peak_rss_mb, rss_mb
from edgeseg.bench import plan_cases, plot_results, run_benchmarks
from edgeseg.cli import main
from edgeseg.errors import EdgesegError


def test_plan_for_build_dir(rt_build: Path) -> None:
    cases, skipped, size = plan_cases(rt_build)
    assert size == (32, 48)
    assert sorted(c.name for c in cases) == ["onnxrt model.fp16.onnx", "onnxrt model.onnx"]
    assert {c.precision for c in cases} == {"fp32", "fp16"}
    assert "torch" in skipped  # no .pt recorded in the build: said, not silently dropped


def test_run_reports_ordered_percentiles(rt_build: Path) -> None:
    cases, _, size = plan_cases(rt_build, backends=["onnxruntime"], threads=1)
    results = run_benchmarks(cases, [1, 2], size, warmup=1, iters=5)
    assert len(results) == 4 and all(r.skipped is None for r in results)
    for r in results:
        lat = r.latency_ms
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r.throughput_fps == pytest.approx(r.batch * 1000 / lat["mean"])
        assert r.peak_rss_mb > 0 and r.device == "cpu" and r.power_mw is None


def test_static_batch_graph_is_skipped_with_reason(rt_static_build: Callable[..., Path]) -> None:
    build = rt_static_build(1)
    cases, _, size = plan_cases(build / "model.onnx")
    results = run_benchmarks(cases, [1, 2], size, warmup=0, iters=2)
    assert results[0].skipped is None
    assert results[1].skipped == "static batch 1"


def test_torch_cases_from_bundle(rt_bundle: Path) -> None:
    cases, skipped, size = plan_cases(rt_bundle)
    names = [c.name for c in cases]
    assert names[0] == "torch fp32" and size == (64, 64)
    assert "GPU only" in skipped.values()  # fp16 / channels_last / CUDA graphs are listed, not hidden
    results = run_benchmarks(cases, [1], size, warmup=1, iters=2)
    assert all(r.skipped is None and r.latency_ms["p50"] > 0 for r in results)


def test_peak_rss_tracks_an_allocation_without_resetting_the_kernels_peak() -> None:
    # Judged against rss_mb() read at the same moment, not against "start + size": under xdist other
    # threads of this worker (ONNX Runtime, torch) free memory concurrently, so the rise seen is not
    # the block's size (CI once saw 18 of 64 MiB).
    before = peak_rss_mb()
    with PeakRss(interval=0.001) as rss:
        block = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
        high = rss_mb()
        assert high is not None
        time.sleep(0.05)  # the sampler thread runs while the block lives
        del block
        after = rss_mb()
        assert after is not None
        if high - after > 128:  # the block went back to the OS: only the thread can have seen `high`
            assert rss.peak_mib >= high - 64
    assert rss.peak_mib >= high - 64  # the peak outlives the allocation
    # The process's own high-water mark (what `time -v` reports) only ever grows.
    assert peak_rss_mb() >= max(before, rss.peak_mib) - 1


def test_plot_and_cli_report(rt_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    main(
        [
            "bench",
            str(rt_build),
            "--batch",
            "1,2",
            "--warmup",
            "1",
            "--iters",
            "3",
            "--out",
            str(out),
            "--json",
            "--threads",
            "1",
        ]
    )
    report = json.loads((out / "bench.json").read_text())
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["settings"]
        == report["settings"]
        == {"batches": [1, 2], "warmup": 1, "iters": 3, "input_size": [32, 48], "power": None}
    )
    assert {(r["case"], r["batch"]) for r in report["results"]} == {
        (c, b) for c in ("onnxrt model.onnx", "onnxrt model.fp16.onnx") for b in (1, 2)
    }
    assert report["machine"]["cores"] >= 1 and "torch" in report["skipped"]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(EdgesegError, match="nothing was measured"):
        plot_results([], out / "empty.png")


def test_cli_rejects_bad_batches(rt_build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(rt_build), "--batch", "0,x"])
    assert exit_info.value.code == 2 and "--batch" in capsys.readouterr().err


def test_cpu_info_is_read_from_the_system() -> None:
    from edgeseg.bench import cpu_info

    info = cpu_info()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        if names:
            assert info["model"] == names[0]
        flag_lines = [ln for ln in text.splitlines() if ln.startswith("flags")]
        if flag_lines:
            assert ("avx512_vnni" in info["flags"]) == (" avx512_vnni" in flag_lines[0])
    assert info["cores"] >= 1
