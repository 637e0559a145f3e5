"""scripts/gpu_check.sh in --dry-run mode (the CI side of the one-call GPU check), and its logic.

The dry run hides the optional packages that the lent GPU machine may lack (import blocked in every
child process through a ``sitecustomize`` on PYTHONPATH), so it also checks that the GPU check works
from the repository on a bare machine. It runs once per module (about 20 s on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# Not on the GPU machine's list (torch, numpy, onnx, onnxruntime, pytest, typer, rich, ninja).
HIDDEN = [
    "yaml",
    "PIL",
    "onnxscript",
    "onnxsim",
    "polygraphy",
    "modelopt",
    "matplotlib",
    "hypothesis",
    "onnxruntime_extensions",
    "onnx_graphsurgeon",
    "onnxslim",
    "onnxconverter_common",
    "av",
    "cv2",
]
GPU_STEPS = ["build_ext", "cuda_tests", "fused_bench", "runtime_bench", "tensorrt"]

# Raises ModuleNotFoundError for the hidden names, for imports and importlib.util.find_spec alike.
SITECUSTOMIZE = """
import os, sys
_HIDDEN = set(filter(None, os.environ.get("GPU_CHECK_TEST_HIDE", "").split(",")))
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HIDDEN:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)  # Python's own wording
        return None
sys.meta_path.insert(0, _Hide())
"""

pytestmark = pytest.mark.xdist_group("gpu_check")


def _load(name: str, folder: str = "scripts") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")


def _run_script(outdir: Path, *args: str, hide: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    (tmp / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(tmp), GPU_CHECK_TEST_HIDE=",".join(hide))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(outdir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("gpu_check")
    out = tmp / "out"
    return _run_script(out, "--dry-run", hide=HIDDEN, tmp=tmp), out


@pytest.fixture(scope="module")
def report(dry_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text())


def _steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["steps"]}


def test_dry_run_reaches_every_step_and_skips_the_gpu_ones(report: dict[str, Any]) -> None:
    assert report["dry_run"] is True and report["exit_code"] == 0 and report["failed"] == []
    assert [s["name"] for s in report["steps"]] == ["preflight", *GPU_STEPS]
    steps = _steps(report)
    assert steps["preflight"]["status"] == "passed"
    for name in GPU_STEPS:
        assert steps[name]["status"] == "skipped", steps[name]
        assert "GPU" in steps[name]["reason"], steps[name]["reason"]


def test_dry_run_survives_a_machine_without_the_optional_packages(report: dict[str, Any]) -> None:
    modules = _steps(report)["preflight"]["details"]["modules"]
    assert all(modules[m] is None for m in ("yaml", "PIL", "onnxscript", "onnxsim", "polygraphy", "modelopt"))
    assert modules["torch" if "torch" in modules else "numpy"]  # what the check needs is still there


def test_dry_run_collects_the_cuda_tests(report: dict[str, Any]) -> None:
    step = _steps(report)["cuda_tests"]
    files, tests = step["details"]["files"], step["details"]["tests"]
    assert {"tests/ops/test_fused_ddc_op.py", "tests/runtime/test_cuda.py"} <= set(files)
    names = {t["name"].rsplit("::", 1)[-1] for t in tests}
    assert {"test_fused_ddc_cuda_fp32", "test_fused_ddc_cuda_fp16", "test_gpu_benchmark_cases"} <= names
    assert step["details"]["counts"]["skipped"] == len(tests)
    for t in tests:  # skipped for the GPU, or (a whole file) for a package hidden from this run
        if t.get("missing_dependency"):
            assert t["missing_dependency"].split(".")[0] in HIDDEN and "--wheels" in t["message"]
            assert t["name"] in step["reason"]
        else:
            assert "CUDA" in t["message"], t


def test_dry_run_smoke_runs_both_benchmark_scripts(report: dict[str, Any], dry_run: Any) -> None:
    _, out = dry_run
    steps = _steps(report)
    fused = json.loads((out / "fused_ddc.json").read_text())
    assert fused == steps["fused_bench"]["details"]["report"] and fused["complete"]
    assert [(r["n"], r["h"], r["w"]) for r in fused["results"]] == [(1, 4, 8)]
    assert fused["results"][0]["eager_ms"] > 0 and fused["results"][0]["fused_ms"] > 0
    assert fused["goals"] == {}  # goals are about the CUDA kernel
    runtime = json.loads((out / "gpu_runtime.json").read_text())
    assert runtime["complete"] and runtime["settings"]["model"] == "dbmsnet_r50vd_os16"
    assert [r["case"] for r in runtime["results"]] == ["torch fp32 eager (cpu)", "torch fp32 +fused (cpu)"]
    assert all(
        r["skipped"] is None and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0
        for r in runtime["results"]
    )
    assert runtime["goal"]["measured"] is None and "CUDA" in runtime["goal"]["reason"]


def test_dry_run_report_files(report: dict[str, Any], dry_run: Any) -> None:
    proc, out = dry_run
    assert sorted(p.name for p in out.iterdir()) == [
        "cuda_tests.xml",
        "fused_ddc.json",
        "gpu_check.json",
        "gpu_check.log",
        "gpu_check.md",
        "gpu_runtime.json",
    ]
    assert [g["met"] for g in report["goals"]] == [None] * 5
    assert [g["measured"] for g in report["goals"]] == [None] * 5
    not_checked = "\n".join(report["not_checked"])
    for item in ("TensorRT engines", "EdgesegFusedDDC plugin inside TensorRT", "Jetson power"):
        assert item in not_checked
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("### GPU check ") and "DRY RUN" in md.splitlines()[0]
    for step in report["steps"]:
        assert f"| {step['title']} | {step['status']} |" in md
    assert md.count("| unmeasured |") == 5 and "Not checked on this machine:" in md
    assert md in (out / "gpu_check.log").read_text() and "[SKIPPED] CUDA tests" in proc.stdout


def test_gpu_run_without_cuda_stops_at_the_preflight(tmp_path: Path) -> None:
    proc = _run_script(tmp_path / "out", hide=[], tmp=tmp_path)
    assert proc.returncode == 2
    rep = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [(s["name"], s["status"]) for s in rep["steps"]] == [("preflight", "failed")]
    assert "no CUDA device" in rep["steps"][0]["reason"] and "--dry-run" in rep["steps"][0]["reason"]
    assert "torch sees no CUDA device" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "10"], "--budget 10: too short"),
        (["--wheels", "/nonexistent/wheels"], "--wheels /nonexistent/wheels: not a folder"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert gpu_check.main([str(tmp_path / "out"), "--dry-run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _check(tmp_path: Path, missing: list[str]) -> Any:
    modules = {m: None if m in missing else "1.0" for ms in gpu_check.NEEDS.values() for m in ms}
    check = gpu_check.GpuCheck(tmp_path, dry_run=True, wheels=None, budget_s=300, trt_precision="fp16")
    check.probe = {
        "modules": modules,
        "distributions": {m: m for m in modules},
        "tensorrt": {"available": False},
    }
    check.scratch = tmp_path / "scratch"
    return check


def test_a_missing_package_skips_the_steps_that_need_it_and_is_said(tmp_path: Path) -> None:
    check = _check(tmp_path, missing=["rich"])
    assert check.missing() == ["Python package rich (rich): skips fused_bench, runtime_bench"]
    check.record("fused_bench", check.step_fused_bench, 60.0)
    (result,) = check.steps
    assert (result.name, result.status) == ("fused_bench", "skipped")
    assert "['rich']" in result.reason and "--wheels" in result.reason
    assert not (tmp_path / "fused_ddc.json").exists()  # the benchmark was not started


def test_budget_cuts_step_limits_and_skips_when_out_of_time(tmp_path: Path) -> None:
    check = _check(tmp_path, missing=[])
    check.deadline = time.monotonic() + 100
    assert 55 < check.limit_for("fused_bench", steps_after=2) <= 60  # 100 s left, 2 x 20 s kept back
    check.deadline = time.monotonic() + 30
    limit = check.limit_for("runtime_bench", steps_after=1)
    check.record("runtime_bench", check.step_runtime_bench, limit)
    assert check.steps[0].status == "skipped" and "out of time" in check.steps[0].reason


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel: one package whose __init__ records where it came from."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "FROM_TEST_WHEEL = True\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for arcname, text in files.items():
            z.writestr(arcname, text)
        z.writestr(f"{info}/RECORD", "".join(f"{a},,\n" for a in [*files, f"{info}/RECORD"]))
    return path


def test_wheels_install_offline_from_the_folder_and_say_what_had_none(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "rich", "99.0")
    _wheel(wheels, "numpy", "99.0").write_bytes(b"not a zip file")  # offered, but pip cannot use it
    check = _check(tmp_path, missing=["rich", "numpy", "pytest"])
    check.wheels = wheels
    check.record("wheels", check.step_wheels, None)
    (result,) = check.steps
    assert result.status == "failed" and "pip could not install ['numpy']" in result.reason
    assert result.details["installed"] == ["rich"] and list(result.details["failed"]) == ["numpy"]
    assert (
        result.details["no_wheel"] == ["pytest"] and "no wheel in the folder for ['pytest']" in result.reason
    )
    assert (check.scratch / "site" / "rich" / "__init__.py").read_text() == "FROM_TEST_WHEEL = True\n"
    assert check.env["PYTHONPATH"].split(os.pathsep)[0] == str(check.scratch / "site")
    assert check.probe["modules"]["rich"] == "99.0"  # re-probed: later steps see the installed wheel


def _cuda_rows(cpu_row: dict[str, Any]) -> list[dict[str, Any]]:
    """The fused benchmark's CPU row reshaped as a CUDA run's rows (the fields only CUDA adds)."""
    rows = []
    for dtype in ("float32", "float16"):
        for n, h, w, speedup, fraction in [
            (1, 32, 64, 5.0, 0.2),
            (1, 256, 512, 2.5, 0.6),
            (8, 64, 128, 2.0, 0.9),
            (8, 256, 512, 2.2, 0.75),
        ]:
            rows.append(
                dict(
                    cpu_row,
                    dtype=dtype,
                    n=n,
                    h=h,
                    w=w,
                    speedup=speedup,
                    compiled_ms=1.0,
                    speedup_vs_compiled=1.5,
                    fused_gbps=3000.0,
                    copy_gbps=4000.0,
                    bandwidth_fraction=fraction,
                )
            )
    return rows


def test_gpu_run_report_formats_goals_and_tables(dry_run: Any, report: dict[str, Any]) -> None:
    # The GPU-only report code, fed with the dry run's own results reshaped as a CUDA run's.
    _, out = dry_run
    bench_fused = _load("bench_fused_ddc", "benchmarks")
    bench_runtime = _load("bench_gpu_runtime", "benchmarks")
    fused = json.loads((out / "fused_ddc.json").read_text())
    rows = _cuda_rows(fused["results"][0])
    fused = dict(fused, results=rows, goals=bench_fused.evaluate_goals(rows))
    runtime = json.loads((out / "gpu_runtime.json").read_text())
    eager, _ = runtime["results"]
    timed = [(bench_runtime.EAGER, 30.0), (bench_runtime.FAST, 9.0), (bench_runtime.FUSED, 12.0)]
    runtime_rows = [
        dict(
            eager,
            case=case,
            size="512x1024",
            gpu_mem_mb=900.0,
            speedup_p50=30.0 / p50,
            latency_ms=dict(eager["latency_ms"], p50=p50),
        )
        for case, p50 in timed
    ]
    runtime = dict(runtime, results=runtime_rows, goal=bench_runtime.evaluate_goal(runtime_rows, {}))
    steps = [
        gpu_check.StepResult("passed", name="fused_bench", details={"report": fused}),
        gpu_check.StepResult("passed", name="runtime_bench", details={"report": runtime}),
    ]
    goals = gpu_check.goals(steps, dry_run=False)
    # N = 1: the worst shape (2.5x at 256x512) misses 3x; N = 8: the largest shape (75 %) meets 70 %.
    assert [(g["measured"], g["met"]) for g in goals[:2]] == [
        ("2.50x at 1x64x256x512", False),
        ("75% at 8x64x256x512", True),
    ]
    assert goals[4]["measured"] == f"3.33x ({bench_runtime.FAST})" and goals[4]["met"] is True
    gpu_report = dict(
        report,
        dry_run=False,
        goals=goals,
        steps=[dict(asdict(s), title=gpu_check.TITLES[s.name]) for s in steps],
    )
    md = gpu_check.markdown(gpu_report, {"torch": {"device": "NVIDIA H200"}})
    assert md.startswith("### GPU check ") and md.splitlines()[0].endswith("NVIDIA H200")
    assert "| float16 | 8 | 256x512 | " in md and "| 75% |" in md
    assert f"| {bench_runtime.FUSED} | 12.00 |" in md and "| 900 | 2.50x |" in md
    assert "| **no** |" in md and "| yes |" in md
