"""The INT8 accuracy guard: its speed on the demo build, and what it keeps on a sensitive network.

Two measurements, each a JSON file:

``speed``
    ``edgeseg build --precision int8`` (the demo model, defaults) from an empty folder, alternately
    with this tree and with each ``--old-tree`` (a copy of ``edgeseg/`` from another commit, run
    from its own folder), so that the load of a shared machine falls on all alike. Per run: the build's
    wall time, ``stages.quantize.duration_s``, the guard's own seconds (quantize / evaluate / rank),
    its steps and excluded layers, and the held-out figures of ``report.json``.

``mobile``
    A MobileNetV3-style segmentation net (``tests/tiny_nets.py`` ``MobileSegNet``: depthwise convs,
    hard-swish, squeeze-excite, a sigmoid-gated head) trained briefly and seeded on
    ``synthetic::train``, then built to INT8 through :func:`edgeseg.build` without the guard
    (naive PTQ, every layer the placement chose) and with it. Calibration: 32 images of
    ``synthetic::calib``; the guard tunes on one seeded draw of 64 ``synthetic::val`` images and
    ``report.json`` judges on 64 others (held-out; the draws are the build's own).

Usage::

    python benchmarks/bench_guard.py speed --old-tree /tmp/old /tmp/orig --runs 3 --json guard_speed.json
    python benchmarks/bench_guard.py speed --old-tree /tmp/orig --runs 1 --json guard_speed_r50.json \
        --build-args "--model dbmsnet_r50vd_os16 --num-classes 7 --input 512x1024 \
                      --calib-data synthetic::calib --val-data synthetic::val"
    python benchmarks/bench_guard.py mobile --iters 600 --json guard_mobile.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZE = (128, 128)


def _guard_summary(folder: Path) -> dict[str, Any]:
    """What build.json and report.json say about the INT8 graph and its guard."""
    build = json.loads((folder / "build.json").read_text())
    quantize = build["stages"].get("quantize", {})
    guard = quantize.get("results", {}).get("accuracy_guard", {})
    out: dict[str, Any] = {"quantize_stage_s": quantize.get("duration_s"), "guard": guard}
    report = folder / "report.json"
    if report.is_file():
        for candidate in json.loads(report.read_text())["candidates"]:
            if candidate.get("precision") == "int8":
                keys = ("pixel_agreement", "miou_delta", "passed")
                out["heldout"] = {k: candidate["heldout"][k] for k in keys}
                out["tuning"] = {k: candidate["tuning"][k] for k in ("pixel_agreement", "miou_delta")}
                out["int8_coverage"] = candidate.get("int8_coverage")
    return out


# --- speed ----------------------------------------------------------------------------------------
def _speed(args: argparse.Namespace) -> dict[str, Any]:
    from edgeseg.bench import machine_info

    trees = [("new", ROOT)]
    for tree in args.old_tree:
        path = Path(tree).resolve()
        if not (path / "edgeseg" / "__init__.py").is_file():
            raise SystemExit(f"--old-tree {path}: no edgeseg/ package in it")
        trees.append((path.name, path))
    work = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    build_args = shlex.split(args.build_args)
    runs = []
    for i in range(args.runs):
        for version, path in trees:
            name = f"{version}{i + 1}"
            env = {**os.environ, "PYTHONPATH": str(path), "OMP_WAIT_POLICY": "PASSIVE"}
            load = os.getloadavg()
            start = time.perf_counter()
            # Run from the tree itself: ``python -c`` puts the working folder first on sys.path.
            code = "import edgeseg; print(edgeseg.__file__); from edgeseg.cli import main; main()"
            proc = subprocess.run([sys.executable, "-c", code, "build", *build_args,
                                   "--precision", "int8", "--out-dir", str(work), "--name", name],
                                  env=env, cwd=path, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"{name}: build failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            if not proc.stdout.startswith(str(path)):
                raise SystemExit(f"{name}: ran {proc.stdout.splitlines()[0]}, not the package in {path}")
            run = {"run": name, "tree": str(path), "load_at_start": [round(v, 2) for v in load],
                   "package": proc.stdout.splitlines()[0],
                   "wall_s": round(wall, 1), **_guard_summary(work / name)}
            runs.append(run)
            g = run["guard"]
            print(f"{name}: load {load[0]:.2f}, wall {wall:.1f} s, guard {g.get('seconds')}, "
                  f"excluded {g['excluded_layers']}, held-out {run['heldout']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    command = f"edgeseg build {args.build_args} --precision int8".replace("  ", " ")
    return {"machine": machine_info(), "command": command + (" (demo defaults)" if not build_args else ""),
            "runs": runs}


# --- mobile ---------------------------------------------------------------------------------------
def _train(iters: int, seed: int, images: int, bn_spread: float) -> Any:
    """MobileSegNet trained with Adam on ``images`` synthetic training images (seeded)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgeseg.checkpoint import IMAGENET_MEAN, IMAGENET_STD
    from edgeseg.precision.calibration import load_validation_set

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_nets import MobileSegNet

    torch.manual_seed(seed)
    data = load_validation_set("synthetic::train", input_size=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                               indices=list(range(images)))
    assert data.masks is not None
    x, y = torch.from_numpy(data.images), torch.from_numpy(data.masks)
    net = MobileSegNet(num_classes=7, bn_spread=bn_spread)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=iters)
    rng = np.random.default_rng(seed)
    net.train()
    start = time.perf_counter()
    for it in range(iters):
        idx = torch.from_numpy(rng.choice(len(x), 16, replace=False))
        xb, yb = x[idx], y[idx]
        if it % 2:  # horizontal flips: cheap augmentation
            xb, yb = xb.flip(-1), yb.flip(-1)
        loss = F.cross_entropy(net(xb)["out"], yb, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (it + 1) % 100 == 0:
            print(f"train {it + 1}/{iters}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return net.eval(), {"iters": iters, "seed": seed, "images": images, "bn_spread": bn_spread,
                        "final_loss": round(loss.item(), 4),
                        "seconds": round(time.perf_counter() - start, 1)}


def _mobile(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import edgeseg
    from edgeseg.bench import machine_info
    from edgeseg.errors import AccuracyGateError

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-guard-mobile-"))
    work.mkdir(parents=True, exist_ok=True)
    config = {"iters": args.iters, "seed": args.seed, "images": args.train_images,
              "bn_spread": args.bn_spread}
    saved, record = work / "mobile_seg.pt", work / "mobile_seg.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    if saved.is_file() and all(done.get(k) == v for k, v in config.items()):
        # The same training already ran in this folder: its weights are reused, not trained again.
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_nets import MobileSegNet

        net = MobileSegNet(num_classes=7)
        net.load_state_dict(torch.load(saved))
        net.eval()
        training = json.loads(record.read_text())
    else:
        net, training = _train(args.iters, args.seed, args.train_images, args.bn_spread)
        torch.save(net.state_dict(), saved)
        record.write_text(json.dumps(training) + "\n")
    variants = {"naive": {"guard": False}, "guard": {}}
    results = {}
    for name, extra in variants.items():
        if args.only and name not in args.only:
            continue
        shutil.rmtree(work / name, ignore_errors=True)
        start = time.perf_counter()
        error = None
        try:
            edgeseg.build(net, name=name, out_dir=str(work), input_size=SIZE, num_classes=7,
                          precision="int8", calib_data="synthetic::calib", calib_size=32,
                          val_data="synthetic::val", val_size=64, **extra)
        except AccuracyGateError as e:  # the naive graph may miss the gate: its report says by how much
            error = str(e)
        results[name] = {"options": extra, "wall_s": round(time.perf_counter() - start, 1), "error": error,
                         **_guard_summary(work / name)}
        r = results[name]
        print(f"{name}: held-out {r.get('heldout')}, tuning {r.get('tuning')}, "
              f"coverage {r.get('int8_coverage')}, excluded {r['guard'].get('excluded_layers')}", flush=True)
    return {"machine": machine_info(), "training": training, "variants": results, "workdir": str(work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    speed = sub.add_parser("speed", help="demo build, this tree vs --old-tree, alternately")
    speed.add_argument("--old-tree", required=True, nargs="+",
                       help="folders holding the edgeseg/ packages to compare (runs are named after them)")
    speed.add_argument("--runs", type=int, default=3)
    speed.add_argument("--build-args", default="",
                       help="more `edgeseg build` arguments, one string (default: none, the demo model)")
    mobile = sub.add_parser("mobile", help="MobileNet-style net: naive INT8 vs the guard (held-out)")
    mobile.add_argument("--iters", type=int, default=600, help="training iterations (batch 16)")
    mobile.add_argument("--train-images", type=int, default=400)
    mobile.add_argument("--seed", type=int, default=0)
    mobile.add_argument("--bn-spread", type=float, default=1.0,
                        help="BatchNorm scales start log-uniform in [1/S, S] (MobileSegNet's bn_spread)")
    mobile.add_argument("--workdir", help="where the builds go (default: a new temporary folder)")
    mobile.add_argument("--only", nargs="*", help="variants to build (default: all)")
    for p in (speed, mobile):
        p.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    result = _speed(args) if args.what == "speed" else _mobile(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
