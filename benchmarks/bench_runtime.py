"""Runtime benchmarks on the CPU: Segmenter overhead and video-pipeline efficiency.

Two measurements, printed and written to one JSON file (the GPU comparison of PyTorch paths is
``benchmarks/bench_gpu_runtime.py``, run by ``scripts/gpu_check.sh``):

1. **Segmenter overhead** (goal <= 10 %): preprocessing + postprocessing time of one frame
   (default 512x1024) as a share of the backend's inference time, on the CPU ONNX Runtime backend.
2. **Video pipeline efficiency** (goal >= 0.9): frames/s of ``Pipeline.run`` (decode, preprocess,
   infer, postprocess + overlay, encode, each in its own thread) over frames/s of the backend alone
   (``Segmenter.infer`` on pre-made inputs, one call after another, nothing else running), for the
   variants in ``VIDEO_VARIANTS`` (x264 preset, helper-stage priority, masks only).

The model: ``--build DIR`` (a build directory), ``--model X.pt`` (a bundle, exported here to an
FP32 ONNX graph with :func:`edgeseg.export.export_onnx`), or by default the shipped demo model if
present, else a small random-weight DBMSNet-R18 (width 0.5, 19 classes, 256x512). The report says
which.

Usage::

    python benchmarks/bench_runtime.py                       # CPU sections, default model
    python benchmarks/bench_runtime.py --frame 512x1024 --iters 20 --video-frames 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.bench import machine_info
from edgeseg.runtime import Segmenter
from edgeseg.stages.options import DEMO_MODEL
from edgeseg.video import Pipeline, VideoSource, VideoWriter


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _time_ms(fn: Any, iters: int) -> dict[str, float]:
    """Median and minimum wall time of ``fn`` in ms (the minimum is the least disturbed by other load)."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times) * 1000.0, "min": min(times) * 1000.0}


def small_dbmsnet_bundle(folder: Path) -> Path:
    """A random-weight DBMSNet-R18 (width 0.5) bundle at 256x512: the stand-in until a demo model exists."""
    from edgeseg.checkpoint import ModelCard, save_model
    from edgeseg.models import build_model

    torch.manual_seed(0)
    card = ModelCard(
        preset="dbmsnet_r18_os16", num_classes=19, overrides={"width": 0.5}, input_size=(256, 512)
    )
    model = build_model(card.preset, num_classes=card.num_classes, **card.overrides).eval()
    path = folder / "small_dbmsnet_r18.pt"
    save_model(path, model, card)
    return path


def export_build(bundle: Path, folder: Path, input_size: tuple[int, int] | None = None) -> Path:
    """A minimal build directory for ``bundle``: ``card.json`` + ``model.onnx`` (FP32, static batch 1).

    ``input_size`` exports the (fully convolutional) model at another input size than its card's.
    """
    import dataclasses

    from edgeseg._io import write_json
    from edgeseg.checkpoint import load_model
    from edgeseg.export import ExportConfig, export_onnx

    model, card = load_model(bundle)
    if input_size is not None:
        card = dataclasses.replace(card, input_size=input_size)
    build = folder / bundle.stem
    build.mkdir(parents=True, exist_ok=True)
    write_json(build / "card.json", card.to_dict())
    export_onnx(model, build / "model.onnx", ExportConfig(input_size=tuple(card.input_size)))
    write_json(build / "build.json", {"options": {"precision": "fp32", "checkpoint": str(bundle)}})
    return build


def overhead(seg: Segmenter, frame: np.ndarray, iters: int) -> dict[str, Any]:
    """Pre / infer / post times for one frame, and (pre + post) / infer (from medians and minima)."""
    frames = torch.from_numpy(frame[None])
    x = seg.preprocess(frames)
    raw = seg.infer(x)
    t = {
        "pre": _time_ms(lambda: seg.preprocess(frames), iters),
        "infer": _time_ms(lambda: seg.infer(x), iters),
        "post": _time_ms(lambda: seg.postprocess(raw, frames), iters),
        "post_overlay": _time_ms(lambda: seg.postprocess(raw, frames, overlay=True), iters),
    }
    share = {k: (t["pre"][k] + t["post"][k]) / t["infer"][k] for k in ("median", "min")}
    share_overlay = {k: (t["pre"][k] + t["post_overlay"][k]) / t["infer"][k] for k in ("median", "min")}
    return {
        "frame": list(frame.shape[:2]),
        "input_size": list(seg.input_size),
        "times_ms": t,
        "share": share,
        "share_with_overlay": share_overlay,
        "goal": "share <= 0.10",
    }


def scene_frame(frame_hw: tuple[int, int]) -> np.ndarray:
    """Large uniform regions and sharp edges, like a scene (noise would make every pixel a boundary)."""
    h, w = frame_hw
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
    frame[..., 1] = (yy * 255 // max(h - 1, 1)).astype(np.uint8)
    frame[..., 2] = 96
    rng = np.random.default_rng(0)
    for _ in range(12):  # filled discs and boxes of random colours
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 12, h // 4)
        colour = rng.integers(0, 256, 3)
        if rng.random() < 0.5:
            frame[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
        else:
            frame[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = colour
    return frame


def _write_clip(path: Path, frames: int, frame_hw: tuple[int, int], fps: int = 25) -> None:
    h, w = frame_hw
    yy, xx = np.mgrid[0:h, 0:w]
    writer = VideoWriter(path, w, h, fps=Fraction(fps))
    try:
        for i in range(frames):
            rgb = np.stack([(xx + 7 * i) % 256, (yy + 3 * i) % 256, (xx + yy + 11 * i) % 256], -1)
            writer.write(rgb.astype(np.uint8))
    finally:
        writer.close()


#: Pipeline variants timed against inference alone: (name, render + encode with this x264 preset or
#: masks only, helper-stage nice increment). The first is what `edgeseg video --overlay` runs.
VIDEO_VARIANTS: list[tuple[str, str | None, int | None]] = [
    ("overlay + encode superfast", "superfast", None),
    ("overlay + encode superfast, helpers not deprioritised", "superfast", 0),
    ("overlay + encode veryfast", "veryfast", None),
    ("masks only (no overlay, no encode)", None, None),
]


def video_efficiency(
    seg: Segmenter, frame_hw: tuple[int, int], frames: int, batch: int, folder: Path, repeats: int
) -> dict[str, Any]:
    """Pipeline FPS over inference-only FPS on the same frames, for each of :data:`VIDEO_VARIANTS`.

    All measurements are interleaved ``repeats`` times. Two ratios per variant: best pipeline run
    over best inference-only run (the runs least disturbed by other load on a shared machine), and
    the median of each repeat's ratio to the inference-only run just before it.
    """
    clip = folder / "clip.mp4"
    _write_clip(clip, frames, frame_hw)
    # Inference only: every frame preprocessed beforehand, then the backend alone, batch by batch.
    decoded = [item for item in VideoSource(clip).frames()]
    inputs = [
        seg.preprocess(torch.from_numpy(np.stack(decoded[i : i + batch]))) for i in range(0, frames, batch)
    ]
    seg.infer(inputs[0])  # warm-up
    infer_only: list[float] = []
    runs: dict[str, list[Any]] = {name: [] for name, _, _ in VIDEO_VARIANTS}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in inputs:
            seg.infer(x)
        infer_only.append(frames / (time.perf_counter() - t0))
        for name, preset, nice in VIDEO_VARIANTS:
            pipeline = Pipeline(seg, batch=batch, render="overlay" if preset else None, helper_nice=nice)
            if preset is None:
                runs[name].append(pipeline.run(VideoSource(clip)))
                continue
            h, w = frame_hw
            writer = VideoWriter(folder / "out.mp4", w, h, fps=Fraction(25), preset=preset)
            try:
                runs[name].append(pipeline.run(VideoSource(clip), sink=lambda r, w=writer: w.write(r.image)))
            finally:
                writer.close()
    best_infer = max(infer_only)
    variants = {}
    for name, stats in runs.items():
        best = max(stats, key=lambda st: st.fps)
        variants[name] = {
            "pipeline_fps": best.fps,
            "ratio_best": best.fps / best_infer,
            "ratio_median": statistics.median(
                st.fps / inf for st, inf in zip(stats, infer_only, strict=True)
            ),
            "all_runs_fps": [st.fps for st in stats],
            "best_run_stats": best.to_dict(),
        }
    return {
        "frames": frames,
        "frame": list(frame_hw),
        "batch": batch,
        "repeats": repeats,
        "infer_only_fps": best_infer,
        "infer_only_all_runs_fps": infer_only,
        "variants": variants,
        "goal": "ratio >= 0.9",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, help="build directory to benchmark")
    parser.add_argument("--model", type=Path, help=".pt bundle (exported here) to benchmark")
    parser.add_argument("--frame", type=_size, default=(512, 1024), help="frame size HxW (default 512x1024)")
    parser.add_argument("--iters", type=int, default=10, help="timed repetitions per measurement")
    parser.add_argument("--video-frames", type=int, default=40, help="frames in the generated clip")
    parser.add_argument("--batch", type=int, default=1, help="pipeline batch size")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved video runs (best kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (pre/post)")
    parser.add_argument(
        "--standin",
        action="store_true",
        help="use the random-weight DBMSNet-R18 (256x512) even when the demo model exists",
    )
    parser.add_argument(
        "--input",
        type=_size,
        default=None,
        help="export the model at this input size HxW instead of its card's",
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/runtime.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.build:
            build, model_desc, bundle = args.build, f"build {args.build}", None
        else:
            if args.model:
                bundle, model_desc = args.model, f"bundle {args.model}"
            elif DEMO_MODEL.is_file() and not args.standin:
                bundle, model_desc = DEMO_MODEL, f"demo model {DEMO_MODEL.name}"
            else:
                bundle = small_dbmsnet_bundle(folder)
                model_desc = "small random-weight DBMSNet-R18 (width 0.5, 19 classes, 256x512)"
            build = export_build(bundle, folder / "builds", args.input)
            if args.input:
                model_desc += f", exported at {args.input[0]}x{args.input[1]}"
        report: dict[str, Any] = {
            "command": "python benchmarks/bench_runtime.py " + " ".join(sys.argv[1:]),
            "model": model_desc,
            "machine": machine_info(),
            "load_avg": os.getloadavg(),
        }
        with Segmenter.load(build, backend="onnxruntime", precision="fp32") as seg:
            report["segmenter"] = seg.describe()
            report["overhead"] = overhead(seg, scene_frame(args.frame), args.iters)
            report["video"] = video_efficiency(
                seg, args.frame, args.video_frames, args.batch, folder, args.repeats
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    o, v = report["overhead"], report["video"]
    print(f"model: {model_desc}; frames {o['frame'][0]}x{o['frame'][1]} -> input {o['input_size']}")
    t, share = o["times_ms"], o["share"]
    print(
        f"overhead (median / min ms): pre {t['pre']['median']:.1f} / {t['pre']['min']:.1f}, post "
        f"{t['post']['median']:.1f} / {t['post']['min']:.1f} (overlay {t['post_overlay']['median']:.1f} / "
        f"{t['post_overlay']['min']:.1f}), infer {t['infer']['median']:.1f} / {t['infer']['min']:.1f} "
        f"-> share {share['median']:.1%} / {share['min']:.1%}"
    )
    print(f"video: inference only {v['infer_only_fps']:.2f} fps; pipeline fps, ratios best/best, median:")
    for name, r in v["variants"].items():
        print(f"  {name}: {r['pipeline_fps']:.2f} fps, {r['ratio_best']:.2f}, {r['ratio_median']:.2f}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
