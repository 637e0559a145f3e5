"""Stages that lower the simplified FP32 graph: fp16, or calibrate → quantize (with the guard)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from edgeseg.build_folder import RAW_ONNX, SIM_ONNX, Precision, onnx_name
from edgeseg.errors import EdgesegError
from edgeseg.stages.base import Outcome, Stage
from edgeseg.stages.context import BuildContext

__all__ = ["CalibrateStage", "Fp16Stage", "QuantizeStage"]

FP16_ONNX = onnx_name(Precision.FP16)
INT8_ONNX = onnx_name(Precision.INT8)
#: Pixels the guard's step prediction runs on: the tuning images the last evaluation got most wrong,
#: 8 at the demo's 128x128, 2 at 512x1024 and above.
PREDICT_PIXELS = 8 * 128 * 128
#: Pixels the sensitivity ranking scores on: 2 images at the demo's size, 1 from 256x256 up.
RANK_PIXELS = 2 * 128 * 128


def _images_for(pixels: int, image: tuple[int, ...], low: int, high: int) -> int:
    """How many images of shape ``(..., H, W)`` hold ``pixels``, between ``low`` and ``high``."""
    return max(low, min(high, pixels // (image[-2] * image[-1])))


class Fp16Stage(Stage):
    """Model Optimizer AutoCast to FP16 with FP32 inputs and outputs."""

    name = "fp16"
    reads = (SIM_ONNX,)
    writes = (FP16_ONNX,)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None and ctx.precision is Precision.FP16

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return {"onnx": ctx.path(SIM_ONNX)}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        from edgeseg.precision.fp16 import DATA_MAX

        calibration = ctx.calibration_set(required=False)
        return {"data_max": DATA_MAX, "reference_inputs": calibration.sha256 if calibration else "random"}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        return [ctx.path(FP16_ONNX)]

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.precision.fp16 import DATA_MAX, convert_fp16

        path = ctx.path(FP16_ONNX)
        calibration = ctx.calibration_set(required=False)
        images = calibration.images[:8] if calibration is not None else None
        result = convert_fp16(ctx.path(SIM_ONNX), path, reference_inputs=images, data_max=DATA_MAX)
        compat = ctx.check_compat(path)
        ctx.deploy = path
        return Outcome({"onnx": path},
                       results={"fp32_nodes": result.fp32_nodes, "nodes": result.num_nodes,
                                "trt_compat": compat},
                       detail=f"{path.name}: {len(result.fp32_nodes)} compute nodes kept FP32")

    def reuse(self, ctx: BuildContext) -> str:
        ctx.deploy = ctx.path(FP16_ONNX)
        return FP16_ONNX


class CalibrateStage(Stage):
    """Activation ranges over the calibration images, into a cache keyed by graph + images + method."""

    name = "calibrate"
    reads = (SIM_ONNX,)
    writes = ("calib_cache/<key>.cache",)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None and ctx.precision is Precision.INT8

    def _key(self, ctx: BuildContext) -> str:
        from edgeseg._io import sha256_file
        from edgeseg.precision.ranges import DEFAULT_PERCENTILE

        calibration = ctx.calibration_set(required=True)
        parts = {"onnx": sha256_file(ctx.path(SIM_ONNX)), "calibration_set": calibration.sha256,
                 "method": ctx.options.calib_method}
        if ctx.options.calib_method == "percentile":
            parts["percentile"] = DEFAULT_PERCENTILE
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def cache(self, ctx: BuildContext) -> Path:
        return ctx.path("calib_cache") / f"{self._key(ctx)}.cache"

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return {"onnx": ctx.path(SIM_ONNX)}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        calibration = ctx.calibration_set(required=True)
        return {"method": ctx.options.calib_method, "calibration_set": calibration.sha256,
                "source": calibration.source, "images": len(calibration)}

    def fresh(self, ctx: BuildContext, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        from edgeseg.precision.int8 import read_calibration_cache

        cache = self.cache(ctx)
        if not cache.is_file():
            return False
        try:
            read_calibration_cache(cache)
        except EdgesegError as e:
            # A damaged cache (truncated by a crash, edited) is rebuilt, not trusted.
            ctx.reporter.note(f"calibration cache not trusted: {e}; recalibrating")
            return False
        if not ctx.record.is_fresh(self.key(ctx), inputs, options):
            # Keyed by graph + images + method: the ranges in it are exactly what we would compute.
            ctx.record.record(self.key(ctx), inputs=inputs, outputs={"cache": cache}, options=options,
                              results={"key": cache.stem, "reused": True})
        ctx.reporter.note(f"calibration cache hit: {cache} (no recalibration)")
        return True

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.precision.int8 import write_calibration_cache
        from edgeseg.precision.ranges import collect_ranges

        calibration = ctx.calibration_set(required=True)
        cache = self.cache(ctx)
        label = f"calibrating ({ctx.options.calib_method})"
        with ctx.reporter.task(label, len(calibration)) as progress:
            amax = collect_ranges(ctx.path(SIM_ONNX), calibration.images, ctx.options.calib_method,
                                  progress=progress)
        write_calibration_cache(cache, amax)
        return Outcome({"cache": cache}, results={"key": cache.stem, "reused": False, "tensors": len(amax)},
                       detail=f"{len(amax)} tensors, {len(calibration)} images ({calibration.source})")

    def reuse(self, ctx: BuildContext) -> str:
        return f"{self.cache(ctx).relative_to(ctx.folder)} (cache hit)"


class QuantizeStage(Stage):
    """Q/DQ placement by Model Optimizer from the cached ranges, held to the gates by the guard."""

    name = "quantize"
    reads = (SIM_ONNX, "calib_cache/<key>.cache")
    writes = (INT8_ONNX,)

    def __init__(self, calibrate: CalibrateStage) -> None:
        self._calibrate = calibrate

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None and ctx.precision is Precision.INT8

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return {"onnx": ctx.path(SIM_ONNX), "calibration_cache": self._calibrate.cache(ctx)}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        validation = ctx.validation_set()
        return {"high_precision_dtype": ctx.options.int8_high_precision, "guard": ctx.options.guard,
                "max_miou_drop": ctx.options.max_miou_drop, "min_agreement": ctx.int8_agreement_gate(),
                "validation_set": validation.sha256 if validation is not None else None}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        return [ctx.path(INT8_ONNX)]

    def run(self, ctx: BuildContext) -> Outcome:
        path = ctx.path(INT8_ONNX)
        results = self._quantize_with_guard(ctx, path)
        results["trt_compat"] = ctx.check_compat(path)
        ctx.deploy = path
        guard = results["accuracy_guard"]
        if guard.get("status") == "skipped":
            detail = f"{path.name}: accuracy guard skipped ({guard['reason']})"
        elif not guard["labels"]:
            detail = (f"{path.name}: pixel agreement {guard['pixel_agreement']:.2f}% with the FP32 reference "
                      f"(gate {guard['min_pixel_agreement']}%, no labels), "
                      f"{len(guard['excluded_layers'])} layers kept in higher precision")
        else:
            detail = (f"{path.name}: mIoU drop {guard['miou_drop']:.2f} (budget {guard['max_miou_drop']}), "
                      f"pixel agreement {guard['pixel_agreement']:.2f}% "
                      f"(gate {guard['min_pixel_agreement']}%), "
                      f"{len(guard['excluded_layers'])} layers kept in higher precision")
        return Outcome({"onnx": path}, results=results, detail=detail)

    def reuse(self, ctx: BuildContext) -> str:
        ctx.deploy = ctx.path(INT8_ONNX)
        return INT8_ONNX

    def _quantize_with_guard(self, ctx: BuildContext, path: Path) -> dict[str, Any]:
        from edgeseg.export.onnx_export import load_onnx, module_scopes
        from edgeseg.precision.guard import ReferenceEvaluator, run_accuracy_guard
        from edgeseg.precision.int8 import quantize_int8
        from edgeseg.runners.loader import runner_for

        sim, cache = ctx.path(SIM_ONNX), self._calibrate.cache(ctx)
        calibration = ctx.calibration_set(required=True)
        validation = ctx.validation_set()
        hp = ctx.options.int8_high_precision
        last: dict[str, Any] = {}
        # modelopt's placement pass feeds whole batches: a static batch needs that many images.
        sample = calibration.images[:1 if ctx.options.shapes else ctx.options.batch]

        def quantize(excluded: list[str]) -> Path:
            result = quantize_int8(sim, path, calibration_cache=cache, sample=sample,
                                   nodes_to_exclude=excluded, high_precision_dtype=hp)
            last.update(quantized_layers=len(result.quantized_nodes), qdq_nodes=result.num_qdq,
                        high_precision_dtype=hp)
            return path

        if not ctx.options.guard:
            quantize([])
            ctx.reporter.note("accuracy guard skipped on purpose (--no-guard): every layer the placement "
                              "chose is INT8; the held-out validation still judges the graph")
            return {**last, "accuracy_guard": {"status": "skipped", "reason": "--no-guard (on purpose)"}}
        if validation is None:
            quantize([])
            ctx.reporter.note("accuracy guard skipped: no labelled validation data (pass --val-data)")
            return {**last, "accuracy_guard": {"status": "skipped", "reason": "no validation data"}}
        card = ctx.need_card()
        if validation.num_classes is not None and validation.num_classes != card.num_classes:
            raise EdgesegError(f"validation data has {validation.num_classes} classes but the model has "
                               f"{card.num_classes}")
        gate = ctx.int8_agreement_gate()
        # The guard measures what quantization does, so its reference is the FP32 graph it quantizes
        # (ONNX Runtime: twice as fast as eager PyTorch on the CPU); the validation stage then judges
        # the deployed graph against the source model itself, export and simplification included.
        reference = runner_for(sim, Precision.FP32, name=f"onnxrt:{SIM_ONNX} (FP32, the graph quantized)",
                               side_by_side=True)
        with ctx.reporter.task("FP32 reference on tuning images", len(validation)) as progress:
            evaluator = ReferenceEvaluator.from_runner(reference, validation.images,
                                                       validation.masks, card.num_classes,
                                                       ignore_index=card.ignore_index, progress=progress)

        def evaluate(onnx_path: Path) -> Any:
            with ctx.reporter.task("evaluating INT8 graph (ONNX Runtime, fake-quant)",
                                   len(validation)) as progress:
                # A step that can no longer reach the agreement gate stops there: same verdict.
                return evaluator.evaluate(onnx_path, progress=progress, stop_below=gate)

        ranked: dict[str, Any] = {}

        def rank(onnx_path: Path) -> Any:
            from edgeseg.precision.sensitivity import SensitivityRanking

            # Groups of layers are scored here; single layers later, as the exclusion steps need them.
            with ctx.reporter.task("ranking INT8 layers by sensitivity (groups first)", 0) as progress:
                images = validation.images[:_images_for(RANK_PIXELS, validation.images.shape, 1, 2)]
                ranked["ranking"] = SensitivityRanking(onnx_path, images, progress=progress)
            return ranked["ranking"]

        def predict(excluded: list[str], first: Any) -> bool:
            # Where the guard's search starts (never its verdict): the tuning set's disagreement,
            # scaled by how much bypassing these layers' Q/DQ helps on the images it got most wrong.
            if first.pixel_agreement >= gate:
                return True  # the mIoU budget failed, not agreement: nothing to scale
            if "worst" not in ranked:  # the fully quantized graph's worst images (its evaluation's)
                count = _images_for(PREDICT_PIXELS, validation.images.shape, 2, 8)
                ranked["worst"] = evaluator.worst(count)
            worst, wrong = ranked["worst"]
            if wrong == 0:
                return True
            # Holds when the wrong pixels on these images shrink by the factor the gate needs.
            allowed = wrong * (100.0 - gate) / (100.0 - first.pixel_agreement)
            images, reference = validation.images[worst], evaluator.reference[worst]
            return ranked["ranking"].wrong_pixels(excluded, images, reference, stop_above=allowed) <= allowed

        def on_step(step: dict[str, Any]) -> None:
            partial = (f" (stopped after {step['images']} of {len(validation)} images: gate out of reach)"
                       if step.get("stopped_early") else "")
            ctx.reporter.note(f"accuracy guard: {step['excluded']} layer(s) excluded → mIoU drop "
                              f"{step['miou_drop']:.2f}, pixel agreement {step['pixel_agreement']:.2f}%"
                              + partial)

        # Without labels only the agreement with the FP32 reference can be held to a gate.
        budget = ctx.options.max_miou_drop if validation.masks is not None else math.inf
        guard = run_accuracy_guard(budget=budget, min_agreement=gate, quantize=quantize, evaluate=evaluate,
                                   rank=rank, on_step=on_step, predict=predict)
        scopes = module_scopes(load_onnx(ctx.path(RAW_ONNX)))
        # What was kept out of INT8 and why: each layer's ranking score and the MACs it would run in INT8.
        scores = dict(guard.ranking)
        kept = [{"layer": n, "module": scopes.get(n, ""), "relative_error": float(f"{scores[n]:.4g}"),
                 "macs": ranked["ranking"].macs(n)} for n in guard.excluded]
        if kept:
            ctx.reporter.note("accuracy guard kept out of INT8 (layer, module, output error alone, MACs): "
                              + "; ".join(f"{k['layer']} ({k['module'] or '?'}, {k['relative_error']:.3g}, "
                                          f"{k['macs']:,})" for k in kept))
        return {**last, "accuracy_guard": {"status": "done", "validation": validation.source,
                                           "labels": validation.masks is not None,
                                           **guard.to_dict(),
                                           "excluded_modules": [scopes.get(n, "") for n in guard.excluded],
                                           "kept": kept}}
