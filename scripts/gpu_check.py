"""edgeseg's one-call GPU check: does the GPU path work on this machine, and how fast is it?

Driven by ``scripts/gpu_check.sh OUTDIR`` (docs/gpu-validation.md). Steps, in order, each in its own
child process with a time limit, each recorded in ``OUTDIR/gpu_check.json`` even when it fails:

1. ``preflight``: Python, torch, the CUDA device, nvcc / ninja / setuptools, the Python packages each
   step needs, TensorRT, Jetson identity and power sensors (``scripts/gpu_probe.py``). Anything
   missing is said here, in the first seconds, with the steps it will skip.
2. ``wheels`` (with ``--wheels DIR``): missing Python packages installed offline from DIR into
   ``build/gpu_check/site`` (``pip --no-index --no-deps --target``); nothing comes from the network.
3. ``build_ext``: the fused op's extension, ``edgeseg._C``, built in place with the CUDA kernel
   (``setup.py build_ext --inplace --force``: torch's cpp_extension with ninja); compile time.
4. ``cuda_tests``: ``pytest -m cuda`` over every test file that carries the marker.
5. ``fused_bench``: ``benchmarks/bench_fused_ddc.py`` on CUDA, FP32 and FP16, with ``torch.compile``.
6. ``runtime_bench``: ``benchmarks/bench_gpu_runtime.py``: dbmsnet_r50vd_os16 at 512x1024 and
   1024x2048, eager FP32 vs FP16 + channels_last + CUDA graphs (+ fused op).
7. ``tensorrt`` (only where TensorRT is installed, e.g. a Jetson): ``edgeseg build --require-engine``
   on the demo model, then ``edgeseg bench`` on that build (with Jetson power where readable).

Then ``OUTDIR/gpu_check.md`` (a section to paste into docs/gpu-validation.md) lists the results, the
goals and what could not be checked on this machine. The whole run keeps within ``--budget`` seconds
(default 450: under 8 minutes on an H100/H200-class GPU); each step gets its own limit, cut so that
later steps keep a minimum. ``--dry-run`` (CPU machines, CI) runs every step that needs no GPU and
reaches the others, which say what they skipped; the benchmarks then run a tiny CPU smoke test of the
same scripts. Exit status: 0 when no step failed, 1 when one did, 2 when the check could not start.

The check itself needs only the standard library; torch is imported in the child processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# edgeseg._io and edgeseg.errors import nothing outside the standard library.
sys.path.insert(0, str(REPO))
from edgeseg._io import write_json  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402

BUILD = REPO / "build" / "gpu_check"  # scratch (git-ignored): build temp, offline wheels, engines
TOTAL_BUDGET_S = 450.0
JETSON_SCALE = 4.0  # a Jetson compiles and computes several times slower than a desktop GPU
MIN_STEP_S = 20.0  # time kept back for each step still to come
# Per-step limits on an H100/H200-class GPU (seconds); the total budget cuts them further.
STEP_BUDGET_S = {"build_ext": 240.0, "cuda_tests": 120.0, "fused_bench": 180.0, "runtime_bench": 120.0}
TRT_BUDGET_S = 900.0  # engine build + bench: only where TensorRT is installed, outside the 8-minute goal
TAIL_LINES = 40
CUDA_MARK = "pytest.mark.cuda"
PIP_OFFLINE = ["--no-index", "--no-deps", "--no-compile", "--upgrade", "--disable-pip-version-check"]

# Python packages (import names) each step needs besides torch; the probe maps them to wheels.
NEEDS = {
    "build_ext": ["setuptools"],
    "cuda_tests": ["pytest", "numpy"],
    "fused_bench": ["rich"],
    "runtime_bench": ["rich", "numpy"],
    "tensorrt": [
        "numpy",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "onnxsim",
        "polygraphy",
        "modelopt",
        "yaml",
        "typer",
        "rich",
        "PIL",
        "matplotlib",
    ],
}
TITLES = {
    "preflight": "preflight (torch, device, build tools, packages)",
    "wheels": "offline wheels",
    "build_ext": "build edgeseg._C with the CUDA kernel",
    "cuda_tests": "CUDA tests (pytest -m cuda)",
    "fused_bench": "fused DDC op benchmark",
    "runtime_bench": "GPU runtime benchmark (dbmsnet_r50vd_os16)",
    "tensorrt": "TensorRT engine build + edgeseg bench",
}


@dataclass
class StepResult:
    """One step's outcome; ``status`` is passed, failed, timeout or skipped (with the ``reason``)."""

    status: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    name: str = ""  # set by GpuCheck.record, with the time taken and the limit
    seconds: float = 0.0
    limit_s: float | None = None


@dataclass
class Cmd:
    """A finished child process: ``rc`` is None when it was killed at its time limit."""

    rc: int | None
    seconds: float
    tail: str


def probe_machine(env: dict[str, str]) -> dict[str, Any]:
    """``scripts/gpu_probe.py``'s report, run under ``env``.

    Raises:
        EdgesegError: the probe printed no report (its output's end is in the message).
    """
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_probe.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise EdgesegError(
            f"scripts/gpu_probe.py printed no report (exit {proc.returncode}): {tail}"
        ) from None


class GpuCheck:
    """Runs the steps, keeps the time budget, writes the report.

    Args:
        outdir: where gpu_check.json, gpu_check.md, gpu_check.log and the steps' own files go.
        dry_run: CPU mode: run what needs no GPU, reach and skip the rest.
        wheels: folder of wheels for missing Python packages, or None.
        budget_s: the whole run's time limit in seconds (times JETSON_SCALE on a Jetson).
        trt_precision: precision of the TensorRT engine build where TensorRT is installed.
    """

    def __init__(
        self, outdir: Path, *, dry_run: bool, wheels: Path | None, budget_s: float, trt_precision: str
    ) -> None:
        self.outdir, self.dry_run, self.wheels = outdir, dry_run, wheels
        self.budget_s, self.trt_precision = budget_s, trt_precision
        self.started_utc = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.scale = 1.0
        self.steps: list[StepResult] = []
        self.probe: dict[str, Any] = {}
        self.scratch = BUILD
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self._lock = threading.Lock()
        self._log = open(outdir / "gpu_check.log", "w", encoding="utf-8")  # noqa: SIM115 - closed by run()

    # --- output and child processes -------------------------------------------------------------
    def say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)
            self._log.write(text + "\n")
            self._log.flush()

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def run_cmd(self, cmd: Sequence[str], limit_s: float, env: dict[str, str] | None = None) -> Cmd:
        """Run ``cmd`` in the repository, echoing its output; killed with its children at the limit."""
        self.say(f"  $ {shlex.join(cmd)}   (limit {limit_s:.0f} s)")
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: a timeout also stops nvcc, ninja, workers
        )
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip("\n"))
                self.say("    | " + line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        rc: int | None = None
        try:
            rc = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            self.say(f"  stopped after {limit_s:.0f} s (time limit)")
        finally:
            if rc is None:  # the limit, or Ctrl-C
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=10)
        return Cmd(rc, time.monotonic() - t0, "\n".join(tail))

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            return self._run()
        except KeyboardInterrupt:
            self.say("gpu_check: interrupted")
            self.finish()
            return 130
        finally:
            self._log.close()

    def _run(self) -> int:
        mode = "dry run (CPU: the GPU steps are reached and skipped)" if self.dry_run else "GPU run"
        self.say(f"edgeseg gpu_check: {mode}; repository {REPO}; output {self.outdir}")
        self.record("preflight", self.step_preflight, None)
        if self.steps[0].status != "passed":
            return self.finish()
        if self.wheels is not None:
            self.record("wheels", self.step_wheels, None)
        plan = list(STEP_BUDGET_S)
        for i, name in enumerate(plan):
            self.record(name, getattr(self, f"step_{name}"), self.limit_for(name, len(plan) - i - 1))
        self.record("tensorrt", self.step_tensorrt, TRT_BUDGET_S * self.scale)
        return self.finish()

    def limit_for(self, name: str, steps_after: int) -> float:
        """Step ``name``'s time limit: its own budget, cut so that each later step keeps MIN_STEP_S."""
        left = self.deadline - time.monotonic() - MIN_STEP_S * steps_after
        return min(STEP_BUDGET_S[name] * self.scale, left)

    def record(self, name: str, step: Any, limit_s: float | None) -> None:
        """Run one step unless a package it needs is missing or no time is left; never raises."""
        self.say(f"\n== {TITLES[name]}")
        t0 = time.monotonic()
        missing = [m for m in NEEDS.get(name, []) if not self.probe["modules"].get(m)]
        if name == "tensorrt" and not self.tensorrt_ok():
            missing = []  # the step says that TensorRT itself is missing
        if missing:
            result = StepResult("skipped", f"needs the missing Python packages {missing}; pass --wheels DIR")
        elif limit_s is not None and limit_s < MIN_STEP_S:
            result = StepResult("skipped", f"out of time ({self.budget_s * self.scale:.0f} s budget)")
        else:
            try:
                result = step() if limit_s is None else step(limit_s)
            except Exception as e:  # a bug in one step must not cost the others their results
                result = StepResult("failed", f"gpu_check error: {type(e).__name__}: {e}")
        result.name, result.seconds = name, round(time.monotonic() - t0, 1)
        result.limit_s = None if limit_s is None else round(limit_s, 1)
        self.steps.append(result)
        self.say(
            f"[{result.status.upper()}] {TITLES[name]} ({result.seconds:.1f} s)"
            + (f": {result.reason}" if result.reason else "")
        )

    def tensorrt_ok(self) -> bool:
        return bool(self.probe.get("tensorrt", {}).get("available"))

    # --- steps ----------------------------------------------------------------------------------
    def step_preflight(self) -> StepResult:
        try:
            self.probe = p = probe_machine(self.env)
        except (EdgesegError, subprocess.TimeoutExpired) as e:
            self.probe = {"modules": {}}
            return StepResult("failed", str(e))
        if p.get("jetson"):
            self.scale = JETSON_SCALE
            self.deadline = self.started + self.budget_s * JETSON_SCALE
        t = p["torch"]
        self.say(
            f"python {p['python']} ({p['executable']}), {p['machine']}, Jetson: {p.get('jetson') or 'no'}"
        )
        if "error" in t:
            return StepResult("failed", f"torch does not import: {t['error']}", details=p)
        device = "none"
        if t["cuda_available"]:
            device = (
                f"{t['device']} (compute capability {t['compute_capability']}, {t['memory_gb']} GiB, "
                f"cuDNN {t['cudnn']})"
            )
        self.say(f"torch {t['version']} (CUDA {t['cuda']}); CUDA device: {device}")
        tools, trt = p["build_tools"], p["tensorrt"]
        self.say(
            f"build tools: nvcc {tools.get('nvcc_version') or tools.get('nvcc') or 'not found'}, "
            f"ninja {'yes' if tools.get('ninja') else 'not found'}, c++ {tools.get('cxx') or 'not found'}"
        )
        self.say(f"TensorRT: {trt['version'] if trt['available'] else 'no: ' + trt['reason']}")
        for problem in self.missing():
            self.say(f"MISSING: {problem}")
        absent = sorted(p["distributions"][m] for m, v in p["modules"].items() if v is None)
        if absent:  # tests that import them are reported as not run, with the package named
            self.say(f"not installed: {', '.join(absent)}")
        if not t["cuda_available"] and not self.dry_run:
            return StepResult(
                "failed", "torch sees no CUDA device; without one, run with --dry-run", details=p
            )
        return StepResult("passed", f"device: {device}", details=p)

    def missing(self) -> list[str]:
        """What this machine lacks, each with the steps it costs (said by the preflight)."""
        p = self.probe
        by_module: dict[str, list[str]] = {}
        for step, modules in NEEDS.items():
            if step == "tensorrt" and not self.tensorrt_ok():
                continue  # the step is skipped for TensorRT itself
            for m in modules:
                if not p["modules"].get(m):
                    by_module.setdefault(m, []).append(step)
        out = [
            f"Python package {p['distributions'][m]} ({m}): skips {', '.join(s)}"
            for m, s in by_module.items()
        ]
        tools = p.get("build_tools", {})  # absent when torch does not import
        if not self.dry_run:
            if tools.get("cpp_extension_error"):
                out.append(f"torch.utils.cpp_extension ({tools['cpp_extension_error']}): skips build_ext")
            if not tools.get("nvcc"):
                out.append("nvcc (CUDA_HOME, PATH): skips build_ext; the CUDA tests then fail")
            if not tools.get("ninja"):
                out.append("ninja: skips build_ext")
        return out

    def step_wheels(self) -> StepResult:
        assert self.wheels is not None
        dists = self.probe["distributions"]
        absent = sorted(dists[m] for m, version in self.probe["modules"].items() if version is None)
        if not absent:
            return StepResult("skipped", "no Python package is missing")
        # Wheel file names spell the project name with "_" for "-" and "." (PyYAML-6.0.2-cp312-...).
        offered = {_norm(w.name.split("-")[0]) for w in self.wheels.glob("*.whl")}
        wanted = [d for d in absent if _norm(d) in offered]
        site = self.scratch / "site"
        site.mkdir(parents=True, exist_ok=True)
        installed, failed = [], {}
        for dist in wanted:  # one at a time: a broken wheel must not stop the others
            pip = [
                "-m",
                "pip",
                "install",
                *PIP_OFFLINE,
                "--find-links",
                str(self.wheels),
                "--target",
                str(site),
            ]
            res = self.run_cmd(self.python(*pip, dist), 120)
            if res.rc == 0:
                installed.append(dist)
            else:
                failed[dist] = res.tail.splitlines()[-1] if res.tail else f"exit {res.rc}"
        self.env["PYTHONPATH"] = os.pathsep.join([str(site), self.env["PYTHONPATH"]])
        self.probe["modules"] = probe_machine(self.env)["modules"]
        no_wheel = [d for d in absent if d not in wanted]
        details = {
            "folder": str(self.wheels),
            "site": str(site),
            "installed": installed,
            "failed": failed,
            "no_wheel": no_wheel,
        }
        reason = f"installed {installed}" + (f"; no wheel in the folder for {no_wheel}" if no_wheel else "")
        if failed:
            return StepResult("failed", f"pip could not install {sorted(failed)}; {reason}", details)
        return StepResult("passed", reason, details)

    def step_build_ext(self, limit_s: float) -> StepResult:
        csrc = REPO / "cpp_ext" / "csrc"
        sources = sorted(str(p.relative_to(REPO)) for p in [*csrc.rglob("*.cpp"), *csrc.rglob("*.cu")])
        cmd = self.python(
            "setup.py",
            "build_ext",
            "--inplace",
            "--force",
            "--build-temp",
            os.path.relpath(self.scratch / "ext", REPO),
        )
        details: dict[str, Any] = {"sources": sources, "command": shlex.join(cmd[1:])}
        if not any(s.endswith(".cu") for s in sources) or not any(s.endswith(".cpp") for s in sources):
            return StepResult("failed", f"cpp_ext/csrc lacks .cpp or .cu sources: {sources}", details)
        if self.dry_run:
            why = f"needs a CUDA torch and a GPU; would run `{details['command']}` on {len(sources)} sources"
            return StepResult("skipped", why, details)
        tools = self.probe["build_tools"]
        absent = [t for t in ("nvcc", "ninja") if not tools.get(t)]
        if absent or tools.get("cpp_extension_error"):
            return StepResult("skipped", f"missing {absent or tools['cpp_extension_error']}", details)
        shutil.rmtree(self.scratch / "ext", ignore_errors=True)  # a cold build, so the compile time is honest
        res = self.run_cmd(cmd, limit_s, dict(self.env, USE_CUDA="1", EDGESEG_BUILD_EXT="1"))
        details["compile_s"] = round(res.seconds, 1)
        if res.rc != 0:
            return failure(res, details)
        code = (
            "import json, edgeseg.ops as o; print(json.dumps({'cpu': o.has_kernel('cpu'), "
            "'cuda': o.has_kernel('cuda'), 'error': o.extension_error()}))"
        )
        check = subprocess.run(
            self.python("-c", code), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        try:
            kernels = details["kernels"] = json.loads(check.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return StepResult(
                "failed", "edgeseg.ops does not import after the build", details, check.stderr[-4000:]
            )
        if not kernels["cuda"]:
            return StepResult(
                "failed",
                "built without the CUDA kernel (has_kernel('cuda') is False): "
                + (kernels["error"] or "were the .cu sources compiled? USE_CUDA, CUDA_HOME"),
                details,
            )
        return StepResult(
            "passed", f"compiled in {res.seconds:.0f} s (ninja); has_kernel('cuda') is True", details
        )

    def step_cuda_tests(self, limit_s: float) -> StepResult:
        tests_dir = REPO / "tests"
        files = sorted(
            str(p.relative_to(REPO)) for p in tests_dir.rglob("test_*.py") if CUDA_MARK in p.read_text()
        )
        if not files:
            return StepResult("failed", f"no test file under tests/ carries {CUDA_MARK}")
        xml = self.outdir / "cuda_tests.xml"
        xml.unlink(missing_ok=True)
        cmd = self.python(
            "-m",
            "pytest",
            "-m",
            "cuda",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={xml}",
            *files,
        )
        # The machine's own pytest plugins (timeouts, coverage, benchmarks) stay out of the run.
        res = self.run_cmd(cmd, limit_s, dict(self.env, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
        tests = [skip_missing_dependency(t) for t in parse_junit(xml)] if xml.is_file() else []
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no test ran"
        details = {"files": files, "counts": counts, "tests": tests, "exit_code": res.rc}
        if res.rc is None:
            return StepResult("timeout", f"stopped at {limit_s:.0f} s; {summary}", details, res.tail)
        bad = [t["name"] for t in tests if t["outcome"] in ("failed", "error")]
        missing = {t["name"]: t["message"] for t in tests if t.get("missing_dependency")}
        # pytest exits 1 on collection errors: accepted when each was a missing package (said below).
        if bad or res.rc not in ((0, 1) if missing else (0,)) or not tests:
            return StepResult("failed", f"{summary}: {bad or f'pytest exit {res.rc}'}", details, res.tail)
        said = f"; not run: {missing}" if missing else ""
        skipped = [t for t in tests if t["outcome"] == "skipped" and not t.get("missing_dependency")]
        if self.dry_run:
            names = ", ".join(t["name"] for t in skipped)
            why = f"need a CUDA GPU: {len(skipped)} tests collected and skipped ({names}){said}"
            return StepResult(
                "skipped" if skipped and all("CUDA" in t["message"] for t in skipped) else "failed",
                why,
                details,
            )
        if skipped:  # on a GPU machine every cuda test must run
            reasons = sorted({t["message"] for t in skipped})
            return StepResult("failed", f"{summary} on a GPU machine: {reasons}{said}", details, res.tail)
        return StepResult("passed", summary + said, details)

    def step_fused_bench(self, limit_s: float) -> StepResult:
        if self.dry_run:  # the same script: one tiny FP32 shape on the CPU kernel
            args = "--device cpu --threads 1 --batch 1 --image-size 64x128 --stride 16 --warmup 1 --repeats 1"
        else:
            args = "--device cuda --dtype float32 float16 --warmup 3 --repeats 15"
            if self.probe["modules"].get("triton"):  # torch.compile's GPU backend
                args += " --compile"
            else:
                self.say("  triton is missing: the torch.compile comparison is left out")
        return self._bench("benchmarks/bench_fused_ddc.py", args, "fused_ddc.json", limit_s)

    def step_runtime_bench(self, limit_s: float) -> StepResult:
        if self.dry_run:  # the same script and model: its CPU cases at a tiny size
            args = "--size 64x128 --warmup 1 --iters 3 --threads 1"
        else:
            args = "--iters 30" if self.probe.get("jetson") else "--iters 100"
        return self._bench("benchmarks/bench_gpu_runtime.py", args, "gpu_runtime.json", limit_s)

    def _bench(self, script: str, args: str, json_name: str, limit_s: float) -> StepResult:
        out = self.outdir / json_name
        out.unlink(missing_ok=True)
        cmd = self.python(script, *args.split(), "--json", str(out))
        res = self.run_cmd(cmd, limit_s)
        report = json.loads(out.read_text()) if out.is_file() else None
        details = {"command": shlex.join(cmd[1:]), "json": json_name, "report": report}
        n = len(report["results"]) if report else 0
        if res.rc is None:  # the scripts rewrite their JSON as they go: keep what was measured
            return StepResult("timeout", f"stopped at {limit_s:.0f} s; {n} results kept", details, res.tail)
        if res.rc != 0 or not report or not report.get("complete") or not n:
            return failure(res, details)
        if self.dry_run:
            why = f"the GPU benchmark needs a CUDA GPU; the CPU smoke run of {script} passed ({n} results)"
            return StepResult("skipped", why, details)
        return StepResult("passed", f"{n} results", details)

    def step_tensorrt(self, limit_s: float) -> StepResult:
        if self.dry_run:
            return StepResult("skipped", "needs TensorRT and a GPU (dry run)")
        if not self.tensorrt_ok():
            return StepResult("skipped", self.probe["tensorrt"]["reason"])
        t0 = time.monotonic()
        engines, bench_out = self.scratch / "engines", self.scratch / "trt_bench"
        shutil.rmtree(engines, ignore_errors=True)
        build = self.python(
            "-m",
            "edgeseg.cli",
            "build",
            "--precision",
            self.trt_precision,
            "--name",
            "gpu_check",
            "--out-dir",
            str(engines),
            "--require-engine",
        )
        res = self.run_cmd(build, limit_s)
        details: dict[str, Any] = {"build_command": shlex.join(build[1:]), "build_s": round(res.seconds, 1)}
        if res.rc != 0:
            return failure(res, details)
        bench = self.python(
            "-m",
            "edgeseg.cli",
            "bench",
            str(engines / "gpu_check"),
            "--batch",
            "1",
            "--iters",
            "50",
            "--out",
            str(bench_out),
        )
        details["bench_command"] = shlex.join(bench[1:])
        res = self.run_cmd(bench, max(MIN_STEP_S, limit_s - (time.monotonic() - t0)))
        if res.rc != 0 or not (bench_out / "bench.json").is_file():
            return failure(res, details)
        shutil.copy(bench_out / "bench.json", self.outdir / "trt_bench.json")
        report = details["report"] = json.loads((bench_out / "bench.json").read_text())
        ran = [r for r in report["results"] if r["skipped"] is None]
        if not any(r["backend"] == "tensorrt" for r in ran):
            return StepResult("failed", "the engine was built but no TensorRT case ran", details, res.tail)
        return StepResult(
            "passed", f"engine built in {details['build_s']:.0f} s; {len(ran)} bench results", details
        )

    # --- report ---------------------------------------------------------------------------------
    def finish(self) -> int:
        failed = [s.name for s in self.steps if s.status in ("failed", "timeout")]
        started = bool(self.steps) and self.steps[0].status == "passed"
        exit_code = 2 if not started else 1 if failed else 0
        report = {
            "schema": 1,
            "dry_run": self.dry_run,
            "started_utc": self.started_utc,
            "seconds": round(time.monotonic() - self.started, 1),
            "budget_s": self.budget_s * self.scale,
            "commit": git_commit(),
            "command": shlex.join(["scripts/gpu_check.sh", *sys.argv[1:]]),
            "steps": [dict(asdict(s), title=TITLES[s.name]) for s in self.steps],
            "goals": goals(self.steps, self.dry_run),
            "not_checked": not_checked(self.steps, self.probe),
            "failed": failed,
            "exit_code": exit_code,
        }
        write_json(self.outdir / "gpu_check.json", report)
        md = markdown(report, self.probe)
        (self.outdir / "gpu_check.md").write_text(md, encoding="utf-8")
        self.say("\n" + md)
        verdict = "FAILED: " + ", ".join(failed) if failed else "no step failed"
        self.say(
            f"gpu_check: {verdict}; {report['seconds']:.0f} s; {self.outdir}/gpu_check.json, gpu_check.md"
        )
        return exit_code


def failure(res: Cmd, details: dict[str, Any]) -> StepResult:
    """A step whose command failed or ran out of time, with the last line it printed."""
    if res.rc is None:
        return StepResult("timeout", "stopped at its time limit", details, res.tail)
    last = next((ln for ln in reversed(res.tail.splitlines()) if ln.strip()), "")
    return StepResult("failed", f"exit {res.rc}: {last[:300]}", details, res.tail)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def parse_junit(path: Path) -> list[dict[str, Any]]:
    """Per test case of a JUnit XML file: ``name``, ``outcome`` and a one-line ``message``."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "failed" if tag == "failure" else tag
                # For failures and errors the traceback's last line says what went wrong.
                last = next((ln for ln in reversed((el.text or "").splitlines()) if ln.strip()), "")
                message = el.get("message") or ""
                if tag != "skipped" and last:
                    message = f"{message}: {last.removeprefix('E').strip()}"
                break
        tests.append(
            {
                "name": f"{case.get('classname', '')}::{case.get('name', '')}".strip(":"),
                "outcome": outcome,
                "seconds": float(case.get("time") or 0.0),
                "message": message[:500],
            }
        )
    return tests


def skip_missing_dependency(test: dict[str, Any]) -> dict[str, Any]:
    """A test (file) that errored because a third-party package is missing counts as skipped, saying so."""
    found = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", test["message"])
    if test["outcome"] != "error" or not found or found.group(1).split(".")[0] == "edgeseg":
        return test
    return dict(
        test,
        outcome="skipped",
        missing_dependency=found.group(1),
        message=f"needs the missing Python package {found.group(1)} (pass --wheels DIR)",
    )


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            # "-dirty" when the tree differs from the commit: a record must not claim code it did not run.
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _step(steps: list[StepResult], name: str) -> StepResult | None:
    return next((s for s in steps if s.name == name), None)


def _report_of(steps: list[StepResult], name: str) -> dict[str, Any] | None:
    step = _step(steps, name)
    return step.details.get("report") if step else None


# (report, goal key, what, target, format) of each goal in BENCHMARKS.md "GPU goals".
FUSED_GOALS = (
    ("speedup_n1", "fused op vs eager DDC steps, N = 1 (worst shape)", ">= 3x", "{:.2f}x"),
    (
        "bandwidth_fraction_n8",
        "fused op share of device copy bandwidth, N = 8 (largest shape)",
        ">= 70 %",
        "{:.0%}",
    ),
)
RUNTIME_GOAL = (
    "best non-TensorRT path (FP16 + channels_last + CUDA graphs, the faster of with and without the fused "
    "op) vs eager FP32, dbmsnet_r50vd_os16 at 512x1024, p50"
)


def goals(steps: list[StepResult], dry_run: bool) -> list[dict[str, Any]]:
    """The GPU goals with what this run measured (``met`` is None when unmeasured; always in a dry run)."""
    fused = {} if dry_run else (_report_of(steps, "fused_bench") or {}).get("goals", {})
    out = []
    for dtype in ("float32", "float16"):
        for key, what, target, fmt in FUSED_GOALS:
            entry = fused.get(dtype, {}).get(key)
            measured = f"{fmt.format(entry['measured'])} at {entry['shape']}" if entry else None
            met = entry["met"] if entry else None
            out.append({"goal": f"{what}, {dtype}", "target": target, "measured": measured, "met": met})
    runtime = {} if dry_run else (_report_of(steps, "runtime_bench") or {}).get("goal") or {}
    speedup = runtime.get("measured")
    out.append(
        {
            "goal": RUNTIME_GOAL,
            "target": ">= 3x",
            "measured": f"{speedup:.2f}x ({runtime['case']})" if speedup is not None else None,
            "met": runtime.get("met"),
        }
    )
    return out


def not_checked(steps: list[StepResult], probe: dict[str, Any]) -> list[str]:
    """What this machine could not check, each with why."""
    trt = _step(steps, "tensorrt")
    trt_ran = trt is not None and trt.status == "passed"
    out = []
    if not trt_ran:
        why = trt.reason if trt else "not reached"
        out.append(f"TensorRT engines (build, TrtRunner, `edgeseg bench` on engines): {why}")
    out.append(
        "the EdgesegFusedDDC plugin inside TensorRT: gpu_check does not build the plugin library; where "
        "TensorRT is installed follow cpp_ext/README.md (cmake, ctest, `edgeseg export --plugin fused-ddc`)"
    )
    results = trt.details["report"]["results"] if trt is not None and trt_ran else []
    if not any(r.get("power_source") for r in results):
        why = (
            "not a Jetson"
            if not probe.get("jetson")
            else "no TensorRT bench ran, or no power sensor was read"
        )
        out.append(f"Jetson power (`edgeseg bench --power`): {why}")
    return out


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(report: dict[str, Any], probe: dict[str, Any]) -> str:
    """The run as a section for docs/gpu-validation.md."""
    t = probe.get("torch", {})
    device = t.get("device") or "no CUDA device"
    title = f"### GPU check {report['started_utc'][:10]}: {device}"
    if report["dry_run"]:
        title += " (DRY RUN on a CPU machine: nothing was measured)"
    tools = probe.get("build_tools", {})
    lines = [
        title,
        "",
        f"`{report['command']}` at commit {report['commit'] or 'unknown'}: "
        f"Python {probe.get('python', '?')} ({probe.get('machine', '?')}), torch {t.get('version', '?')} "
        f"(CUDA {t.get('cuda')}), {tools.get('nvcc_version') or 'no nvcc'}; {report['seconds']:.0f} s "
        f"of a {report['budget_s']:.0f} s budget; exit status {report['exit_code']}.",
        "",
        "| step | status | time (s) | result |",
        "|---|---|---:|---|",
    ]
    for s in report["steps"]:
        reason = s["reason"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {s['title']} | {s['status']} | {s['seconds']:.1f} | {reason} |")
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in report["goals"]:
        met = {True: "yes", False: "**no**", None: "unmeasured"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured'] or '-'} | {met} |")
    if not report["dry_run"]:
        lines += _bench_tables(report)
    lines += ["", "Not checked on this machine:", ""]
    lines += [f"* {item}" for item in report["not_checked"]]
    return "\n".join(lines) + "\n"


def _bench_tables(report: dict[str, Any]) -> list[str]:
    steps = {s["name"]: s for s in report["steps"]}
    lines: list[str] = []
    fused = steps.get("fused_bench", {}).get("details", {}).get("report")
    if fused and fused["results"]:
        lines += [
            "",
            "Fused DDC op (C = 64, dilations 1/3/5/7, median ms; `benchmarks/bench_fused_ddc.py`):",
            "",
            "| dtype | N | HxW | eager | fused | speedup | compiled | vs compiled | fused GB/s | copy GB/s "
            "| of copy BW | kernel alone, of copy BW |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fused["results"]:
            lines.append(
                f"| {r['dtype']} | {r['n']} | {r['h']}x{r['w']} | {_fmt(r['eager_ms'], '.3f')} | "
                f"{_fmt(r['fused_ms'], '.3f')} | {_fmt(r['speedup'])}x | "
                f"{_fmt(r.get('compiled_ms'), '.3f')} | "
                f"{_fmt(r.get('speedup_vs_compiled'))}x | {_fmt(r.get('fused_gbps'), '.0f')} | "
                f"{_fmt(r.get('copy_gbps'), '.0f')} | {_fmt(r.get('bandwidth_fraction'), '.0%')} | "
                f"{_fmt(r.get('kernel_bandwidth_fraction'), '.0%')} |"
            )
    runtime = steps.get("runtime_bench", {}).get("details", {}).get("report")
    if runtime and runtime["results"]:
        settings = runtime["settings"]
        lines += [
            "",
            f"Runtime, {settings['model']} (batch {settings['batch']}, {settings['iters']} timed calls; "
            "`benchmarks/bench_gpu_runtime.py`):",
            "",
            "| size | case | p50 ms | p90 ms | p99 ms | peak GPU MiB | vs eager FP32 |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in runtime["results"]:
            if r["skipped"]:
                lines.append(f"| {r['size']} | {r['case']} | skipped: {r['skipped']} | | | | |")
                continue
            lat = r["latency_ms"]
            lines.append(
                f"| {r['size']} | {r['case']} | {_fmt(lat['p50'])} | {_fmt(lat['p90'])} | "
                f"{_fmt(lat['p99'])} | {_fmt(r['gpu_mem_mb'], '.0f')} | {_fmt(r['speedup_p50'])}x |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/gpu_check.sh",
        description=__doc__.splitlines()[0],
        epilog="docs/gpu-validation.md explains each step and how to run this on a Jetson.",
    )
    parser.add_argument("outdir", type=Path, help="folder for gpu_check.json, gpu_check.md and the logs")
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU machine: run what needs no GPU, skip the rest"
    )
    parser.add_argument("--wheels", type=Path, help="folder of wheels for missing Python packages (offline)")
    parser.add_argument(
        "--budget",
        type=float,
        default=TOTAL_BUDGET_S,
        help=f"time limit of the whole run in seconds (default {TOTAL_BUDGET_S:.0f}; "
        f"x{JETSON_SCALE:.0f} on a Jetson)",
    )
    parser.add_argument(
        "--trt-precision",
        default="fp16",
        choices=["fp32", "fp16", "int8"],
        help="precision of the TensorRT engine build where TensorRT is installed",
    )
    args = parser.parse_args(argv)
    try:
        if args.outdir.exists() and not args.outdir.is_dir():
            raise EdgesegError(f"OUTDIR {args.outdir}: exists and is not a folder")
        if args.wheels is not None and not args.wheels.is_dir():
            raise EdgesegError(f"--wheels {args.wheels}: not a folder")
        if args.budget < 4 * MIN_STEP_S:
            raise EdgesegError(f"--budget {args.budget:g}: too short, give at least {4 * MIN_STEP_S:.0f} s")
        args.outdir.mkdir(parents=True, exist_ok=True)
    except (EdgesegError, OSError) as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    check = GpuCheck(
        args.outdir.resolve(),
        dry_run=args.dry_run,
        wheels=args.wheels.resolve() if args.wheels else None,
        budget_s=args.budget,
        trt_precision=args.trt_precision,
    )
    try:
        return check.run()
    except KeyboardInterrupt:
        print("gpu_check: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
