"""Fused DDC op vs the unfused PyTorch eager DDC block, side by side, at DBMSNet shapes.

For each (batch, H x W) it times, interleaved in one loop so both see the same machine state:

* ``eager``: DDC steps 2-4 as the unfused model runs them (four Conv+BN+ReLU branch modules, the
  pooling branch, concat, channel shuffle, residual add);
* ``fused``: the same steps as :class:`~edgeseg.ops.FusedDDC` runs them (pooling-branch conv in
  PyTorch, then one ``torch.ops.edgeseg.fused_ddc`` call);
* ``block eager`` / ``block fused``: the whole block, reduce conv included;
* with ``--compile``: ``torch.compile`` of the unfused steps 2-4;
* on CUDA: a device-to-device copy of the output's size, and the fused op's effective bandwidth
  (x read once + residual read once + y written once) as a fraction of that copy's bandwidth.

Shapes: C = 64 reduced channels (a 320-channel DDC block), H x W at strides 4 and 16 of 512x1024
and 1024x2048 (De1 and De3 of DBMSNet at OS16), N = 1 and 8. Results print as a table and, with
``--json``, are written as JSON, with the goals of ``GOALS`` evaluated on the CUDA results (fused
>= 3x eager at N = 1, on every N = 1 shape; >= 70 % of the copy bandwidth at N = 8, on the largest
N = 8 shape, the one least flattered by caches). Examples::

    python benchmarks/bench_fused_ddc.py --device cpu --threads 1 --skip 8x256x512
    python benchmarks/bench_fused_ddc.py --device cuda --dtype float32 float16 --compile --json out.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from edgeseg._io import write_json
from edgeseg.models.dbmsnet import DDCBlock
from edgeseg.models.layers import channel_shuffle
from edgeseg.ops import FusedDDC, extension_available, extension_error, has_kernel

REDUCED_CHANNELS = 64
DILATIONS = (1, 3, 5, 7)
IMAGE_SIZES = ((512, 1024), (1024, 2048))
STRIDES = (4, 16)
# docs/gpu-validation.md: fused >= 3x eager at N = 1, and >= 70 % of a device copy's bandwidth at N = 8.
GOALS = {"speedup_n1": 3.0, "bandwidth_fraction_n8": 0.70}


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function timing one call in milliseconds (CUDA events on GPU, perf_counter on CPU)."""
    if device.type == "cuda":

        def cuda_time(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return cuda_time

    def cpu_time(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return cpu_time


def _randomize(block: DDCBlock, seed: int) -> DDCBlock:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return block.eval()


def _eager_steps(block: DDCBlock) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """DDC steps 2-4 exactly as DDCBlock.forward runs them after its reduce conv."""

    def steps(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ys = [branch(r) for branch in block.branches]
        ys.append(block.pool(r.mean((2, 3), keepdim=True)).expand_as(r))
        return channel_shuffle(torch.cat(ys, 1), block.shuffle_groups) + x

    return steps


def _fused_steps(fused: FusedDDC) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """DDC steps 2-4 as FusedDDC.forward runs them after its reduce conv."""

    def steps(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(fused.pool(r.mean((2, 3), keepdim=True))).flatten(1)
        return torch.ops.edgeseg.fused_ddc.default(
            r, fused.weight, list(fused.dilations), fused.scale, fused.shift, pooled, x
        )

    return steps


def bench_case(
    n: int,
    h: int,
    w: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    repeats: int,
    compile_: bool,
) -> dict[str, float | int | str]:
    """Time every variant for one shape; returns medians in ms plus derived ratios."""
    c = REDUCED_CHANNELS
    block = _randomize(DDCBlock(5 * c, DILATIONS), seed=0).to(device=device, dtype=dtype)
    fused = FusedDDC.from_ddc(block)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5 * c, h, w, generator=g).to(device=device, dtype=dtype)
    with torch.inference_mode():
        r = block.reduce(x)
    eager, fused_op = _eager_steps(block), _fused_steps(fused)
    variants: dict[str, Callable[[], object]] = {
        "eager": lambda: eager(r, x),
        "fused": lambda: fused_op(r, x),
        "block_eager": lambda: block(x),
        "block_fused": lambda: fused(x),
    }
    if compile_:
        # A fresh Dynamo cache per shape: the closures share one code object, so without the reset
        # the recompiles would pile up until Dynamo's recompile limit silently falls back to eager.
        torch._dynamo.reset()
        compiled = torch.compile(eager, dynamic=False)
        variants["compiled"] = lambda: compiled(r, x)
    if device.type == "cuda":
        y = torch.empty(n, 5 * c, h, w, device=device, dtype=dtype)
        variants["copy"] = lambda: y.copy_(x)
        # The op's kernel alone (pooled branch precomputed): separates the kernel's bandwidth from
        # the small pooling-branch kernels that the fused steps launch before it.
        with torch.inference_mode():
            pooled = torch.relu(fused.pool(r.mean((2, 3), keepdim=True))).flatten(1)
        dil = list(fused.dilations)
        variants["kernel"] = lambda: torch.ops.edgeseg.fused_ddc.default(
            r, fused.weight, dil, fused.scale, fused.shift, pooled, x
        )
    timer = _timer(device)
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in variants.values():
                fn()
        for _ in range(repeats):
            for name, fn in variants.items():
                times[name].append(timer(fn))
    result: dict[str, float | int | str] = {
        "n": n,
        "c": c,
        "h": h,
        "w": w,
        "dtype": str(dtype).removeprefix("torch."),
    }
    for name, ts in times.items():
        result[f"{name}_ms"] = statistics.median(ts)
    result["speedup"] = result["eager_ms"] / result["fused_ms"]  # type: ignore[operator]
    result["block_speedup"] = result["block_eager_ms"] / result["block_fused_ms"]  # type: ignore[operator]
    if compile_:
        result["speedup_vs_compiled"] = result["compiled_ms"] / result["fused_ms"]  # type: ignore[operator]
    if device.type == "cuda":
        elem = x.element_size()
        # The op's compulsory traffic: x read once, residual read once, y written once.
        op_bytes = (n * c * h * w + 2 * n * 5 * c * h * w) * elem
        copy_bytes = 2 * n * 5 * c * h * w * elem  # copy reads and writes y's size
        result["fused_gbps"] = op_bytes / result["fused_ms"] / 1e6  # type: ignore[operator]
        result["copy_gbps"] = copy_bytes / result["copy_ms"] / 1e6  # type: ignore[operator]
        result["bandwidth_fraction"] = result["fused_gbps"] / result["copy_gbps"]  # type: ignore[operator]
        result["kernel_bandwidth_fraction"] = (
            op_bytes / result["kernel_ms"] / 1e6 / result["copy_gbps"]  # type: ignore[operator]
        )
    return result


def evaluate_goals(results: list[dict]) -> dict[str, dict]:
    """The goals of ``GOALS`` per dtype, from CUDA results (the CPU kernel has no such goal).

    Returns:
        ``{dtype: {"speedup_n1": {...}, "bandwidth_fraction_n8": {...}}}``, each entry holding the
        ``goal``, the ``measured`` value, the ``shape`` it was measured at and ``met``; an entry is
        absent when its batch size was not run.
    """
    out: dict[str, dict] = {}
    for dtype in dict.fromkeys(r["dtype"] for r in results):
        rows = [r for r in results if r["dtype"] == dtype and "bandwidth_fraction" in r]
        goals: dict[str, dict] = {}
        n1 = [r for r in rows if r["n"] == 1]
        if n1:
            worst = min(n1, key=lambda r: r["speedup"])
            goals["speedup_n1"] = _goal(GOALS["speedup_n1"], worst["speedup"], worst)
        n8 = [r for r in rows if r["n"] == 8]
        if n8:
            largest = max(n8, key=lambda r: r["h"] * r["w"])
            goals["bandwidth_fraction_n8"] = _goal(
                GOALS["bandwidth_fraction_n8"], largest["bandwidth_fraction"], largest
            )
        if goals:
            out[dtype] = goals
    return out


def _goal(goal: float, measured: float, row: dict) -> dict:
    shape = f"{row['n']}x{row['c']}x{row['h']}x{row['w']}"
    return {"goal": goal, "measured": measured, "shape": shape, "met": measured >= goal}


def machine(device: torch.device) -> dict[str, str | int]:
    """What the numbers were measured on."""
    info: dict[str, str | int] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device.type,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        info["cpu"] = f"{names[0]} x{len(names)}" if names else platform.processor()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float16"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--image-size",
        nargs="+",
        default=[f"{h}x{w}" for h, w in IMAGE_SIZES],
        metavar="HxW",
        help="image sizes whose DDC maps are timed (default: 512x1024 1024x2048)",
    )
    parser.add_argument(
        "--stride", type=int, nargs="+", default=list(STRIDES), help="map strides (default: 4 16)"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], metavar="NxHxW", help="shapes to leave out, e.g. 8x256x512"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU); defaults to torch's choice")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the unfused steps")
    parser.add_argument("--json", type=Path, help="write results here")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    device = torch.device(args.device)
    dtypes = [getattr(torch, d) for d in args.dtype]
    try:
        image_sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.image_size]
    except ValueError:
        parser.error(f"--image-size: expected HxW, got {args.image_size}")
    if any(len(s) != 2 or min(s) < 1 for s in image_sizes) or min(args.stride) < 1:
        parser.error(f"--image-size / --stride: bad value {args.image_size} / {args.stride}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not extension_available():
        console.print(f"[red]edgeseg._C is not built ({extension_error()}): nothing to benchmark")
        return 2
    if not has_kernel(device):
        console.print(f"[red]edgeseg._C has no {device.type} kernel")
        return 2
    if device.type == "cpu" and dtypes != [torch.float32]:
        console.print("[red]the CPU kernel is FP32 only")
        return 2

    shapes = [(n, ih // s, iw // s) for (ih, iw) in image_sizes for s in args.stride for n in args.batch]
    shapes = [sh for sh in shapes if "x".join(map(str, sh)) not in args.skip]
    results = []
    for dtype in dtypes:
        for n, h, w in shapes:
            console.print(
                f"{args.device} {str(dtype).removeprefix('torch.')} N={n} C={REDUCED_CHANNELS} {h}x{w} ..."
            )
            results.append(
                bench_case(
                    n,
                    h,
                    w,
                    device=device,
                    dtype=dtype,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    compile_=args.compile,
                )
            )
            if args.json:  # after every shape: a run stopped by a time limit keeps what it measured
                write_json(args.json, _report(device, results, complete=False))

    dtype_names = ", ".join(args.dtype)
    table = Table(title=f"fused DDC vs eager ({device.type}, {dtype_names}, median of {args.repeats})")
    cols = [
        "dtype",
        "N",
        "HxW",
        "eager ms",
        "fused ms",
        "speedup",
        "block eager ms",
        "block fused ms",
        "block speedup",
    ]
    if args.compile:
        cols += ["compiled ms", "vs compiled"]
    if device.type == "cuda":
        cols += ["fused GB/s", "copy GB/s", "of copy BW"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in results:
        row = [str(r["dtype"]), str(r["n"]), f"{r['h']}x{r['w']}", f"{r['eager_ms']:.2f}",
               f"{r['fused_ms']:.2f}", f"{r['speedup']:.2f}x", f"{r['block_eager_ms']:.2f}",
               f"{r['block_fused_ms']:.2f}", f"{r['block_speedup']:.2f}x"]  # fmt: skip
        if args.compile:
            row += [f"{r['compiled_ms']:.2f}", f"{r['speedup_vs_compiled']:.2f}x"]
        if device.type == "cuda":
            row += [
                f"{r['fused_gbps']:.0f}",
                f"{r['copy_gbps']:.0f}",
                f"{100 * r['bandwidth_fraction']:.0f}%",
            ]
        table.add_row(*row)
    Console().print(table)
    report = _report(device, results, complete=True)
    for dtype_name, dtype_goals in report["goals"].items():
        for name, g in dtype_goals.items():
            verdict = "met" if g["met"] else "MISSED"
            console.print(
                f"goal {name} ({dtype_name}, {g['shape']}): {g['measured']:.2f} vs {g['goal']} -> {verdict}"
            )
    if args.json:
        write_json(args.json, report)
    return 0


def _report(device: torch.device, results: list[dict], *, complete: bool) -> dict:
    return {
        "machine": machine(device),
        "command": " ".join(sys.argv),
        "complete": complete,
        "results": results,
        "goals": evaluate_goals(results),
    }


if __name__ == "__main__":
    sys.exit(main())
