"""GPU runtime benchmark: a zoo model in PyTorch eager FP32 vs the fastest non-TensorRT PyTorch path.

Cases, each timed on the module call with CUDA events (``edgeseg.bench.run_benchmarks``, the same
machinery as ``edgeseg bench``), per image size:

* ``torch fp32 eager`` - the reference;
* ``torch fp16 +cl +graphs`` - FP16 weights and activations, channels_last, one CUDA graph per input;
* ``torch fp16 +cl +graphs +fused`` - the same with DBMSNet's DDC blocks fused (``model.fuse()``,
  the CUDA kernel of ``torch.ops.edgeseg.fused_ddc``).

Reported per case: latency p50/p90/p99 (ms per call), peak GPU memory (PyTorch's allocator, reset
per case) and the p50 speedup over eager FP32. Goal (docs/gpu-validation.md): the best non-TensorRT
path >= 3x eager FP32 at 512x1024. The best is the faster of the two FP16 cases, and the report names
it: the fused op reads and writes NCHW, so in a channels_last network it adds layout copies around
each block, and whether it still wins is what the run shows.

Weights are random: a convolutional network's latency does not depend on its weight values, so no
checkpoint is needed. cuDNN autotuning (``cudnn.benchmark``) is on for every case, as a deployment
would have it; the warm-up calls absorb the tuning.

Without CUDA (``scripts/gpu_check.py --dry-run``) the same plan runs its CPU cases instead (FP32
eager and FP32 + fused op, through ``TorchRunner``) so the code path stays tested in CI; those
numbers are a smoke test, not a benchmark.

Usage::

    python benchmarks/bench_gpu_runtime.py --json gpu_runtime.json
    python benchmarks/bench_gpu_runtime.py --model dbmsnet_r18_os16 --size 512x1024 --iters 200
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgeseg._io import write_json
from edgeseg.bench import BenchCase, BenchResult, RunnerCase, TorchGpuCase, run_benchmarks
from edgeseg.models import build_model, list_models
from edgeseg.ops import extension_error, has_kernel

DEFAULT_MODEL = "dbmsnet_r50vd_os16"
DEFAULT_SIZES = ("512x1024", "1024x2048")
EAGER = "torch fp32 eager"
FAST = "torch fp16 +cl +graphs"
FUSED = FAST + " +fused"
# docs/gpu-validation.md: the best non-TensorRT path at least 3x eager FP32 at 512x1024.
GOAL = {"cases": (FAST, FUSED), "size": "512x1024", "speedup": 3.0}


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 512x1024), got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"{text!r}: H and W must be at least 32 (output stride 16)")
    return h, w


def fused_unavailable(device: str) -> str | None:
    """Why the fused cases cannot run on ``device`` (None when they can)."""
    if has_kernel(device):
        return None
    error = extension_error()
    return f"fused op not compiled: {error}" if error else f"fused op built without a {device} kernel"


def plan(model: torch.nn.Module, cuda: bool) -> tuple[list[BenchCase], dict[str, str]]:
    """The cases for ``model`` (eval mode, on the CPU) and ``{case: reason}`` for those left out."""
    from edgeseg.runners.torch import TorchRunner

    def plain() -> Any:
        return copy.deepcopy(model)

    def fused() -> Any:
        return copy.deepcopy(model).fuse()

    skipped: dict[str, str] = {}
    reason = fused_unavailable("cuda" if cuda else "cpu")
    if cuda:
        half = torch.float16
        cases: list[BenchCase] = [
            TorchGpuCase(EAGER, plain, dtype=torch.float32, channels_last=False, cuda_graph=False),
            TorchGpuCase(FAST, plain, dtype=half, channels_last=True, cuda_graph=True),
        ]
        if reason is None:
            cases.append(TorchGpuCase(FUSED, fused, dtype=half, channels_last=True, cuda_graph=True))
        else:
            skipped[FUSED] = reason
        return cases, skipped
    cases = [RunnerCase(f"{EAGER} (cpu)", "torch", "fp32", "cpu", lambda: TorchRunner(plain()))]
    if reason is None:
        cases.append(
            RunnerCase("torch fp32 +fused (cpu)", "torch", "fp32", "cpu", lambda: TorchRunner(fused()))
        )
    else:
        skipped["torch fp32 +fused (cpu)"] = reason
    skipped.update(dict.fromkeys((FAST, FUSED), "needs a CUDA GPU"))
    return cases, skipped


def evaluate_goal(rows: list[dict[str, Any]], skipped: dict[str, str]) -> dict[str, Any]:
    """GOAL against the rows of the run, on the faster FP16 case (named in ``case``).

    Returns:
        ``goal``, ``size``, ``case``, ``measured`` (p50 speedup over eager FP32) and ``met``; the last
        two are None, with a ``reason``, when no FP16 case ran at that size.
    """
    out: dict[str, Any] = {"goal": GOAL["speedup"], "size": GOAL["size"], "case": None}
    ran = [
        r for r in rows
        if r["case"] in GOAL["cases"] and r["size"] == GOAL["size"] and r.get("speedup_p50") is not None
    ]  # fmt: skip
    if not ran:
        reasons = [skipped.get(c) or f"{c}: not run at {GOAL['size']}" for c in GOAL["cases"]]
        reasons += [
            f"{r['case']}: {r['skipped']}" for r in rows if r["skipped"] and r["size"] == GOAL["size"]
        ]
        return dict(out, measured=None, met=None, reason="; ".join(dict.fromkeys(reasons)))
    best = max(ran, key=lambda r: r["speedup_p50"])
    return dict(
        out, case=best["case"], measured=best["speedup_p50"], met=best["speedup_p50"] >= GOAL["speedup"]
    )


def _rows(results: list[BenchResult], size: str) -> list[dict[str, Any]]:
    """Results as dicts with ``size`` and the p50 speedup over eager FP32 at the same batch."""
    rows = [dict(asdict(r), size=size) for r in results]
    eager = {r["batch"]: r["latency_ms"].get("p50") for r in rows if r["case"].startswith(EAGER)}
    for r in rows:
        base, p50 = eager.get(r["batch"]), r["latency_ms"].get("p50")
        r["speedup_p50"] = base / p50 if base and p50 else None
    return rows


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        from edgeseg.bench import machine_info

        info = machine_info()
    except ImportError as e:  # machine_info reads onnxruntime's version; a bare GPU box may lack it
        info["note"] = f"edgeseg.bench.machine_info unavailable ({e})"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo preset (default: {DEFAULT_MODEL})")
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument(
        "--size", type=_size, nargs="+", default=[_size(s) for s in DEFAULT_SIZES], metavar="HxW"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100, help="timed calls per case and size")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU runs)")
    parser.add_argument("--json", type=Path, help="write results here (rewritten after each size)")
    args = parser.parse_args(argv)
    if args.model not in list_models():
        parser.error(f"--model {args.model!r}: not a zoo preset (edgeseg info lists them)")
    if args.iters < 1 or args.warmup < 0 or min(args.batch) < 1:
        parser.error(f"--iters/--warmup/--batch: bad value {args.iters}/{args.warmup}/{args.batch}")

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=args.num_classes).eval()
    cases, skipped = plan(model, cuda)
    for name, reason in skipped.items():
        console.print(f"[yellow]skipped {name}: {reason}")

    report: dict[str, Any] = {
        "machine": _machine(),
        "command": " ".join(sys.argv),
        "settings": {
            "model": args.model,
            "num_classes": args.num_classes,
            "device": "cuda" if cuda else "cpu",
            "batch": args.batch,
            "warmup": args.warmup,
            "iters": args.iters,
            "cudnn_benchmark": True,
            # FP32 convolutions may run as TF32 on tensor cores when this is on (PyTorch's default).
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "weights": "random (seed 0)",
        },
        "complete": False,
        "results": [],
        "skipped": skipped,
    }
    for h, w in args.size:
        size = f"{h}x{w}"
        results = run_benchmarks(
            cases,
            args.batch,
            (h, w),
            warmup=args.warmup,
            iters=args.iters,
            on_step=lambda step, size=size: console.print(f"{size} {step}"),
        )
        report["results"] += _rows(results, size)
        report["goal"] = evaluate_goal(report["results"], skipped)
        if args.json:  # after every size: a run stopped by a time limit keeps what it measured
            write_json(args.json, report)
    report["complete"] = True

    table = Table(title=f"{args.model}, {report['settings']['device']}, {args.iters} timed calls per case")
    for col in ("size", "case", "batch", "p50 ms", "p90 ms", "p99 ms", "GPU MiB", "vs eager"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in report["results"]:
        if r["skipped"]:
            table.add_row(r["size"], r["case"], str(r["batch"]), "skipped: " + r["skipped"], "", "", "", "")
            continue
        lat, mem, sp = r["latency_ms"], r["gpu_mem_mb"], r["speedup_p50"]
        table.add_row(
            r["size"], r["case"], str(r["batch"]), f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}", f"{mem:.0f}" if mem else "-", f"{sp:.2f}x" if sp else "-",
        )  # fmt: skip
    Console().print(table)
    goal = report["goal"]
    if goal["measured"] is None:
        console.print(
            f"goal best path >= {goal['goal']}x eager at {goal['size']}: unmeasured ({goal['reason']})"
        )
    else:
        verdict = "met" if goal["met"] else "MISSED"
        console.print(
            f"goal best path at {goal['size']}: {goal['case']} {goal['measured']:.2f}x -> {verdict}"
        )
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
