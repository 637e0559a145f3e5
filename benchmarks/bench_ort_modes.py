"""Which ONNX Runtime mode should judge an INT8 graph? Fake-quant vs ORT's optimised integer kernels.

The accuracy guard and ``edgeseg validate`` run Q/DQ graphs with ONNX Runtime's graph optimizations
disabled, so every QuantizeLinear/DequantizeLinear pair is evaluated in float as written
(fake-quantization). With optimizations on, ORT fuses the pairs into its own integer kernels
(QLinearConv and friends): closer to integer arithmetic, and faster, but ORT's kernel choice rather
than TensorRT's. This script measures both on a build's **held-out** images (``report.json`` →
``splits.heldout``: images neither calibration nor the guard used), side by side in one run:

* pixel agreement and mIoU delta of ``model.int8.onnx`` in each mode against the FP32 graph
  (``model.sim.onnx``, all optimizations; it matches the PyTorch model to ~1e-5, see report.json);
* milliseconds per image of each (median, after one warm-up image);
* for the graph's *form*, the same FP32 graph quantized by ONNX Runtime's own ``quantize_static``
  (QDQ, U8 activations, S8 weights, MinMax, on the build's own calibration images) and run with
  all optimizations: ORT's preferred INT8 graph, against which edgeseg's graph (Q/DQ placed for
  TensorRT, the ops left out of INT8 in FP16) can be timed.

Usage::

    edgeseg build --precision int8                       # engines/demo_dbmsnet/
    python benchmarks/bench_ort_modes.py engines/demo_dbmsnet --json ort_modes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.bench import machine_info
from edgeseg.build_folder import CARD_FILE
from edgeseg.checkpoint import load_card
from edgeseg.compare import compare_outputs
from edgeseg.data import load_dataset, parse_spec
from edgeseg.data.transforms import EvalTransform
from edgeseg.errors import EdgesegError
from edgeseg.metrics import to_labels
from edgeseg.runners.onnxrt import OnnxrtRunner
from edgeseg.validate import recorded_heldout

ORT_QDQ = "model.ort_qdq.onnx"  # written by this script into a scratch folder, never into the build
# (graph, graph optimization level, Q/DQ fusion into ORT's integer kernels)
MODES = {"fp32 (all optimizations)": ("model.sim.onnx", "all", True),
         "int8 fake-quant (optimizations disabled)": ("model.int8.onnx", "disabled", True),
         "int8 fake-quant (all optimizations but Q/DQ fusion)": ("model.int8.onnx", "all", False),
         "int8 ORT-optimised (all optimizations)": ("model.int8.onnx", "all", True),
         "ORT quantize_static U8S8 QDQ (all optimizations)": (ORT_QDQ, "all", True)}


def ort_quantize(build: Path, out: Path, card: Any) -> None:
    """ORT's own static INT8 QDQ graph of ``model.sim.onnx``, calibrated on the build's images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgeseg.build_folder import read_report
    from edgeseg.data.images import preprocess_image

    names = (read_report(build) or {}).get("splits", {}).get("calibration") or []
    if not names:
        raise EdgesegError(f"{build}: report.json names no calibration images to quantize with")
    transform = EvalTransform(card.input_size, mean=card.mean, std=card.std)

    def image(name: str) -> np.ndarray:
        # An image file, or sample i of a dataset as report.json names it: "KIND:ROOT:split[i]".
        if Path(name).is_file():
            return preprocess_image(name, transform).numpy()
        spec, _, index = name.rpartition("[")
        return load_dataset(*parse_spec(spec), transform=transform)[int(index.rstrip("]"))][0].numpy()

    import onnx

    input_name = onnx.load(str(build / "model.sim.onnx"), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.names = iter(names)

        def get_next(self) -> dict[str, np.ndarray] | None:
            name = next(self.names, None)
            return None if name is None else {input_name: image(name)[None]}

    quantize_static(str(build / "model.sim.onnx"), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def run(build: Path, limit: int | None, scratch: Path, int8: Path) -> dict[str, Any]:
    card = load_card(build / CARD_FILE)
    ort_quantize(build, scratch / ORT_QDQ, card)
    spec, indices = recorded_heldout(build)
    indices = indices[:limit] if limit else indices
    kind, root, split = parse_spec(spec)
    dataset = load_dataset(kind, root, split, transform=EvalTransform(card.input_size, mean=card.mean,
                                                                      std=card.std))
    samples = [dataset[i] for i in indices]
    images = np.stack([x.numpy() for x, _ in samples]).astype(np.float32)
    masks = np.stack([m.numpy() for _, m in samples])

    labels: dict[str, np.ndarray] = {}
    times: dict[str, list[float]] = {}
    for name, (file, level, fusion) in MODES.items():
        path = scratch / file if file == ORT_QDQ else int8 if file == "model.int8.onnx" else build / file
        with OnnxrtRunner(str(path), graph_optimization=level, qdq_fusion=fusion, name=name) as runner:
            input_name = runner.get_input_metadata()[0].name
            runner.infer({input_name: images[:1]})  # warm-up: session caches, first allocations
            out, ms = [], []
            for i in range(len(images)):
                t0 = time.perf_counter()
                logits = next(iter(runner.infer({input_name: images[i:i + 1]}).values()))
                ms.append((time.perf_counter() - t0) * 1e3)
                out.append(to_labels(np.asarray(logits)).numpy())
        labels[name], times[name] = np.concatenate(out), ms
        print(f"{name}: {statistics.median(ms):.1f} ms/image", file=sys.stderr)

    reference = next(iter(MODES))
    results = []
    for name in MODES:
        m = compare_outputs(labels[reference], labels[name], num_classes=card.num_classes, targets=masks)
        results.append({"mode": name, "graph": MODES[name][0], "graph_optimization": MODES[name][1],
                        "qdq_fusion": MODES[name][2],
                        "pixel_agreement": round(m.pixel_agreement, 4),
                        "miou": round(m.other.miou, 4) if m.other else None,
                        "miou_delta": round(m.miou_delta, 4),
                        "ms_per_image_median": round(statistics.median(times[name]), 2)})
    fake, fake_optimised, optimised, ort_qdq = results[1:5]
    return {"build": str(build), "int8_graph": str(int8), "machine": machine_info(),
            "images": f"{spec}{indices}",
            "heldout_images": len(indices), "results": results,
            "agreement_gap_points": round(fake["pixel_agreement"] - optimised["pixel_agreement"], 4),
            "agreement_gap_fake_quant_optimised_points": round(
                fake["pixel_agreement"] - fake_optimised["pixel_agreement"], 4),
            "speedup_fake_quant_optimised_vs_fake_quant": round(
                fake["ms_per_image_median"] / fake_optimised["ms_per_image_median"], 2),
            "speedup_optimised_vs_fake_quant": round(
                fake["ms_per_image_median"] / optimised["ms_per_image_median"], 2),
            "speedup_ort_qdq_vs_fake_quant": round(
                fake["ms_per_image_median"] / ort_qdq["ms_per_image_median"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path,
                        help="a build folder with model.sim.onnx, model.int8.onnx and report.json")
    parser.add_argument("--limit", type=int, help="only the first N held-out images")
    parser.add_argument("--int8", type=Path, help="another INT8 graph of the same network to judge (e.g. a "
                        "model.int8.onnx.rejected); defaults to the build's model.int8.onnx")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    try:
        int8 = args.int8 or args.build / "model.int8.onnx"
        for path in (args.build / "model.sim.onnx", int8, args.build / CARD_FILE):
            if not path.is_file():
                raise EdgesegError(f"{path}: not found (build with --precision int8 first)")
        import tempfile

        import onnxruntime

        onnxruntime.set_default_logger_severity(3)  # constant-folding notices about FP16 Mul nodes
        with tempfile.TemporaryDirectory() as scratch:
            report = run(args.build, args.limit, Path(scratch), int8)
    except EdgesegError as e:
        print(f"bench_ort_modes: {e}", file=sys.stderr)
        return 2
    print("| mode | pixel agreement (%) | mIoU delta | ms/image |\n|---|---:|---:|---:|")
    for r in report["results"]:
        print(f"| {r['mode']} | {r['pixel_agreement']:.2f} | {r['miou_delta']:+.2f} | "
              f"{r['ms_per_image_median']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
