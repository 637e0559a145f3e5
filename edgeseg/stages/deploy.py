"""Stages that deploy and judge the graph: from-onnx (entry point), engine, validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeseg._io import write_json
from edgeseg.build_folder import CARD_FILE, REPORT_FILE, Precision, engine_name, read_report
from edgeseg.checkpoint import ModelCard, load_card
from edgeseg.errors import AccuracyGateError, EdgesegError
from edgeseg.stages.base import Outcome, Stage
from edgeseg.stages.context import BuildContext, finish_hint

__all__ = ["EngineStage", "FromOnnxStage", "ValidateStage"]


class FromOnnxStage(Stage):
    """``--from-onnx``: take an already-converted graph (and its card) as the graph to deploy."""

    name = "from-onnx"
    writes = (CARD_FILE, "model.<precision>.onnx")

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.options.from_onnx is not None

    def fresh(self, ctx: BuildContext, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        return False  # cheap, and it must re-check the user's file every time

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.build_folder import onnx_name
        from edgeseg.export.onnx_export import load_onnx, save_onnx

        src = Path(ctx.options.from_onnx)  # type: ignore[arg-type]
        model = load_onnx(src)
        card_path = src.parent / CARD_FILE
        if card_path.is_file() and src.parent.resolve() == ctx.folder.resolve():
            # A graph inside its build folder is deployed where it is.
            ctx.card, deploy = load_card(card_path), src
        else:
            meta = {p.key: p.value for p in model.metadata_props}
            if card_path.is_file():
                card = load_card(card_path)
            elif "edgeseg.card" in meta:
                label = f"{src} (metadata edgeseg.card)"
                try:
                    card = ModelCard.from_dict(json.loads(meta["edgeseg.card"]), source=label)
                except json.JSONDecodeError as e:
                    raise EdgesegError(f"{label}: not valid JSON ({e.msg})") from None
            else:
                raise EdgesegError(f"{src}: no card.json beside it and no edgeseg model card in its "
                                   "metadata; was it exported by edgeseg?")
            ctx.card = card
            write_json(ctx.path(CARD_FILE), card.to_dict())
            deploy = ctx.path(onnx_name(ctx.precision))
            save_onnx(model, deploy)
        import onnx

        from edgeseg.sources import check_graph_against_card

        # Its input and output must be what the card says; what cannot be checked is said.
        inferred = onnx.shape_inference.infer_shapes(model)
        for line in check_graph_against_card(inferred, ctx.need_card(), str(src)):
            ctx.reporter.note(f"--from-onnx: not checked: {line}")
        ctx.deploy = deploy
        return Outcome({"onnx": deploy, "card": ctx.path(CARD_FILE)},
                       detail=f"{deploy.name} ({ctx.precision})")

    def reuse(self, ctx: BuildContext) -> str:  # never fresh, see fresh()
        return ""


class EngineStage(Stage):
    """The TensorRT engine, where TensorRT is importable; elsewhere recorded as skipped."""

    name = "engine"
    finishes_on_stop = True
    reads = ("model.<precision>.onnx",)
    writes = ("model.<precision>.engine", "model.<precision>.engine.json")

    def key(self, ctx: BuildContext) -> str:
        return f"engine:{ctx.precision}"  # a folder keeps one engine per precision

    def fresh(self, ctx: BuildContext, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        return False  # TensorRT's timing cache makes a rebuild cheap; a stale engine is not

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return {"onnx": ctx.deploy} if ctx.deploy else {}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        o = ctx.options
        return {"precision": ctx.precision, "workspace_gib": o.workspace, "dla_core": o.dla_core,
                "shapes": o.shapes, "plugin": o.plugin, "plugin_lib": o.plugin_lib}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        engine = ctx.path(engine_name(ctx.precision))
        return [engine, engine.with_name(engine.name + ".json")]

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.trt import tensorrt_available

        deploy = ctx.deploy
        assert deploy is not None  # set by the precision stage or from-onnx; an executor invariant
        available, reason = tensorrt_available()
        if not available:
            ctx.engine = {"status": "skipped", "reason": reason,
                          "finish_with": finish_hint(deploy, ctx.options.target)}
            return Outcome(status="skipped", reason=reason, detail=reason)
        self._check_target_machine(ctx, deploy)
        return self._build(ctx, deploy)

    def reuse(self, ctx: BuildContext) -> str:  # never fresh, see fresh()
        return ""

    @staticmethod
    def _check_target_machine(ctx: BuildContext, deploy: Path) -> None:
        """Refuse to build an engine for ``--target`` on a machine whose engines would not run there."""
        if ctx.options.target is None:
            return
        from edgeseg.stages.targets import load_target, machine_problems
        from edgeseg.trt.metadata import RuntimeInfo

        problems = machine_problems(load_target(ctx.options.target), RuntimeInfo.current())
        if problems:
            raise EdgesegError("engine not built: " + "; ".join(problems) + " (engines are not portable). "
                               f"Finish on the target: {finish_hint(deploy, ctx.options.target)}")

    @staticmethod
    def _build(ctx: BuildContext, deploy: Path) -> Outcome:
        from edgeseg.trt import build_engine

        engine_path = ctx.path(engine_name(ctx.precision))
        kwargs: dict[str, Any] = {"precision": ctx.precision.value, "dla_core": ctx.options.dla_core,
                                  "timing_cache": ctx.options.timing_cache or ctx.path("timing.cache")}
        if ctx.options.workspace is not None:
            kwargs["workspace_gib"] = ctx.options.workspace
        if ctx.options.shapes is not None:
            h, w = ctx.need_card().input_size
            kwargs["shapes"] = {"images": tuple((b, 3, h, w) for b in ctx.options.shapes)}
        if ctx.options.plugin == "fused-ddc":
            kwargs["plugin_libs"] = [ctx.plugin_library()]
        meta = build_engine(deploy, engine_path, **kwargs)
        ctx.engine = {"status": "built", "path": engine_path.name, "metadata": engine_path.name + ".json",
                      "tensorrt_version": meta.get("tensorrt_version"), "gpu": meta.get("gpu")}
        return Outcome({"engine": engine_path},
                       results={"tensorrt_version": meta.get("tensorrt_version"), "gpu": meta.get("gpu")},
                       detail=f"{engine_path.name} (TensorRT {meta.get('tensorrt_version')})")


class ValidateStage(Stage):
    """Every deployed artifact against the reference (``report.json``); gates the built precision."""

    name = "validate"
    reads = ("model*.onnx", "model.*.engine")
    writes = (REPORT_FILE, "validation.png")

    def _data(self, ctx: BuildContext) -> tuple[str | None, int]:
        return ctx.validation_data()

    def _tolerances(self, ctx: BuildContext) -> Any:
        from edgeseg.validate import Tolerances

        tolerances = Tolerances()
        if ctx.options.min_agreement is not None:
            tolerances = tolerances.with_overrides(**{ctx.precision.value: ctx.options.min_agreement})
        return tolerances

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        artifacts = sorted(ctx.folder.glob("model*.onnx")) + sorted(ctx.folder.glob("model.*.engine"))
        return {p.name: p for p in artifacts}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        data, size = self._data(ctx)
        splits = ctx.splits()
        return {"data": data, "images": size, "pixel_agreement": self._tolerances(ctx).pixel_agreement,
                "engine": ctx.engine, "splits": splits.to_dict() if splits is not None else None}

    def fresh(self, ctx: BuildContext, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        # Only a passed validation is reused: a failure may come from outside the artifacts (a
        # missing package, a runner that could not load plugin graphs), and must be retried.
        if not super().fresh(ctx, inputs, options):
            return False
        report = read_report(ctx.folder)
        return bool(report and report.get("passed"))

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.validate import validate

        checkpoint = ctx.checkpoint()
        reference = None
        if checkpoint is None:
            if ctx.source is None:
                reason = ("no FP32 reference here: a --from-onnx graph travels without its source model "
                          "(validate it where the source is, or pass the source with --model)")
                ctx.report = {"engine": ctx.engine}
                return Outcome(status="skipped", reason=reason, detail=reason)
            # A source that is no bundle (.pt2, module, FP32 ONNX) is its own reference.
            reference = ctx.reference_runner()
        data, size = self._data(ctx)
        if data is None and ctx.splits() is None and not ctx.need_card().dataset:
            # Said in the summary and recorded as skipped, never passed silently.
            reason = ("no images to validate on: pass --val-data KIND:ROOT[:split] (labelled) or "
                      "--calib-data DIR (images; split into calibration, tuning and held-out)")
            ctx.report = {"engine": ctx.engine}
            return Outcome(status="skipped", reason=reason, detail=reason)
        plugin_libs = ([ctx.plugin_library()] if ctx.options.plugin and ctx.engine.get("status") == "built"
                       else [])
        splits = ctx.splits()
        kwargs: dict[str, Any] = {}
        if splits is not None:
            # Judged on the held-out images; the tuning images are reported beside them.
            calibration = ctx.calibration_set(required=False)
            record = splits.to_dict()
            if not splits.calibration and calibration is not None:
                record["calibration"] = list(calibration.items)
            source = "data" if splits.labelled else "images"
            kwargs = {source: splits.spec, "subsets": {"tuning": splits.tuning, "heldout": splits.heldout},
                      "splits": record}
        else:
            kwargs = {"data": data, "num_images": size}
        if ctx.precision is Precision.INT8 and not ctx.options.guard and ctx.source is not None:
            kwargs["notes"] = ["--no-guard: the INT8 accuracy guard was skipped on purpose; every layer the "
                               "placement chose is INT8"]
        ctx.report = validate(ctx.folder, checkpoint=checkpoint, reference=reference,
                              tolerances=self._tolerances(ctx), engine=ctx.engine, plugin_libs=plugin_libs,
                              progress=ctx.reporter.show_progress, precision=ctx.precision.value, **kwargs)
        self._judge(ctx)
        return Outcome({"report": ctx.path(REPORT_FILE)}, results={"passed": ctx.report.get("passed")},
                       detail=f"{REPORT_FILE}: {'passed' if ctx.report.get('passed') else 'FAILED'}")

    def reuse(self, ctx: BuildContext) -> str:
        ctx.report = read_report(ctx.folder) or {}
        self._judge(ctx)
        return REPORT_FILE

    @staticmethod
    def _judge(ctx: BuildContext) -> None:
        """The build answers for the precision it built; other graphs in the folder are only noted."""
        from edgeseg.validate import report_failures

        candidates = ctx.report.get("candidates", [])
        own = [c for c in candidates if c.get("precision") == ctx.precision.value]
        others = [c for c in candidates if c.get("precision") != ctx.precision.value]
        for line in report_failures({"candidates": others}):
            ctx.reporter.note(f"validation (other precision): {line}")
        for c in candidates:
            for warning in c.get("warnings", []):
                ctx.reporter.note(f"{Path(c['artifact']).name}: {warning}")
        failed = report_failures({"candidates": own})
        if not own:
            raise EdgesegError(f"validation failed (see {ctx.path(REPORT_FILE)}): "
                               f"no {ctx.precision} artifact could be validated")
        if failed:
            raise AccuracyGateError(f"validation failed (see {ctx.path(REPORT_FILE)}): {'; '.join(failed)}")
