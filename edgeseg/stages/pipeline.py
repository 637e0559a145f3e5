"""The build pipeline: checkpoint → ONNX → simplified → FP16 / INT8 → validated → TensorRT engine.

Each stage reads what the previous one wrote in the build folder (``engines/<name>/``) and records
itself in ``build.json`` (:mod:`edgeseg.stages.record`); a fresh stage is skipped, so re-running a
build resumes it. Stages, in order:

=============  ======================================  =========================================
stage          writes                                  runs when
=============  ======================================  =========================================
``card``       ``card.json``                           always (from the checkpoint)
``export``     ``model.onnx``                          always (not with ``--from-onnx``)
``simplify``   ``model.sim.onnx``                      always (not with ``--from-onnx``)
``fp16``       ``model.fp16.onnx``                     ``--precision fp16``
``calibrate``  ``calib_cache/<key>.cache``             ``--precision int8``
``quantize``   ``model.int8.onnx``                     ``--precision int8`` (accuracy guard)
``validate``   ``report.json``                         always
``engine``     ``model.<precision>.engine`` (+.json)   where TensorRT is importable
=============  ======================================  =========================================

Every ONNX file a stage writes passes :func:`edgeseg.export.check_trt_compat` before it is kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._io import read_json, write_json
from edgeseg.stages.options import (
    DEFAULT_PLUGIN_LIB,
    DEMO_CALIBRATION,
    BuildOptions,
    ModelSource,
    resolve_model,
)
from edgeseg.stages.record import BuildRecord
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError

__all__ = ["Build", "BuildResult", "Reporter", "deploy_onnx_name", "engine_name", "finish_hint"]

Progress = Callable[[int, int], None]


def deploy_onnx_name(precision: str) -> str:
    """File name of the graph a precision deploys: ``model.sim.onnx`` for fp32."""
    return "model.sim.onnx" if precision == "fp32" else f"model.{precision}.onnx"


def engine_name(precision: str) -> str:
    return f"model.{precision}.engine"


def finish_hint(onnx_path: Path, target: str | None = None) -> str:
    """The command that finishes a build on a machine with TensorRT (with the build's ``--target``)."""
    return f"edgeseg build --from-onnx {onnx_path}" + (f" --target {target}" if target else "")


class Reporter:
    """Receives progress from a :class:`Build`; the CLI draws it with rich, the default is silent.

    Attributes:
        show_progress: whether stages that draw their own progress bars (validation) should.
    """

    show_progress = False

    def stage(self, name: str, status: str, detail: str = "") -> None:
        """A stage finished (``status``: done / cached / skipped)."""

    def note(self, message: str) -> None:
        """A one-line message for the user."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Progress]:
        """A long step with a known number of items; yields ``progress(done, total)``."""
        yield lambda done, total: None


@dataclass
class BuildResult:
    """What :meth:`Build.run` produced.

    Args:
        folder: the build folder.
        precision: the precision built.
        deploy_onnx: the graph TensorRT parses.
        report: the ``report.json`` content.
        stages: per stage ``(status, seconds, detail)`` for the summary table.
        engine_status: ``"built"`` or ``"skipped"``.
    """

    folder: Path
    precision: str
    deploy_onnx: Path
    report: dict[str, Any] = field(default_factory=dict)
    stages: list[tuple[str, str, float, str]] = field(default_factory=list)
    engine_status: str = "skipped"


def _portable(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute."""
    absolute = path.resolve()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


def _onnx_precision(model: Any) -> str:
    """The precision a graph encodes: int8 (Q/DQ), fp16 (float16 tensors) or fp32."""
    import onnx

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


class Build:
    """One ``edgeseg build`` run.

    Args:
        options: the build options.
        reporter: progress sink. Defaults to a silent :class:`Reporter`.
    """

    def __init__(self, options: BuildOptions, reporter: Reporter | None = None) -> None:
        self.options = options
        self.reporter = reporter or Reporter()
        self._stages: list[tuple[str, str, float, str]] = []
        self._model: Any = None
        self._calibration: Any = None
        self._validation: Any = None

    # --- orchestration -------------------------------------------------------------------------
    def run(self, *, until: str | None = None) -> BuildResult:
        """Run every stage the options ask for; see the module docstring for the order.

        Args:
            until: ``"simplify"`` stops after the export stages (what ``edgeseg export`` does).
                Defaults to the whole build.
        """
        if until not in (None, "simplify"):
            raise EdgesegError(f"Build.run: until must be None or 'simplify', got {until!r}")
        if self.options.from_onnx is not None:
            return self._run_from_onnx(Path(self.options.from_onnx))
        source = resolve_model(self.options.model)
        self.source = source
        precision = self.options.precision or "int8"
        if self.options.plugin is not None and precision != "fp32" and until is None:
            # Model Optimizer runs custom ops through its TensorRT execution provider, so FP16 / INT8
            # conversion of a graph with plugin nodes cannot happen without TensorRT.
            raise EdgesegError(f"--plugin {self.options.plugin} builds --precision fp32 only: {precision} "
                               "conversion of a graph with plugin nodes needs TensorRT")
        self.folder = Path(self.options.out_dir) / (self.options.name or source.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = BuildRecord(self.folder)
        # "options" (with the resolved precision and checkpoint) is what the runtime and validation
        # read back from build.json (edgeseg.runtime.artifacts.BuildArtifacts).
        # The checkpoint is recorded relative to the working directory when inside it, so that a
        # build folder copied with the repository to the target still finds its reference.
        checkpoint = _portable(source.path) if source.path else None
        self.record.meta.update(name=self.folder.name, source={"kind": source.kind, "ref": source.ref},
                                options={**self.options.to_dict(), "precision": precision,
                                         "checkpoint": checkpoint})
        card = self._stage_card(source)
        self.card = card
        onnx_path = self._stage_export(source, card)
        sim = self._stage_simplify(onnx_path)
        if until == "simplify":
            return BuildResult(folder=self.folder, precision="fp32", deploy_onnx=sim,
                               stages=list(self._stages))
        if precision == "fp16":
            deploy = self._stage_fp16(sim)
        elif precision == "int8":
            deploy = self._stage_int8(sim)
        else:
            deploy = sim
        return self._finish(deploy, precision)

    def _run_from_onnx(self, path: Path) -> BuildResult:
        from edgeseg.export.onnx_export import load_onnx, save_onnx
        from edgeseg.export.trt_compat import check_trt_compat

        model = load_onnx(path)
        precision = _onnx_precision(model)
        if self.options.precision is not None and self.options.precision != precision:
            raise EdgesegError(f"{path}: the graph is {precision}, but --precision {self.options.precision} "
                               "was given")
        # The user's own file: checked, never deleted (unlike the artifacts the stages write).
        check_trt_compat(model, label=str(path))
        card_path = path.parent / "card.json"
        if card_path.is_file():
            # A graph inside a build folder is deployed where it is.
            self.folder, deploy = path.parent, path
            card = ModelCard.from_dict(read_json(card_path))
        else:
            meta = {p.key: p.value for p in model.metadata_props}
            if "edgeseg.card" not in meta:
                raise EdgesegError(f"{path}: no card.json beside it and no edgeseg model card in its "
                                   "metadata; was it exported by edgeseg?")
            card = ModelCard.from_dict(json.loads(meta["edgeseg.card"]))
            self.folder = Path(self.options.out_dir) / (self.options.name or path.name.split(".")[0])
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / "card.json", card.to_dict())
            deploy = self.folder / deploy_onnx_name(precision)
            save_onnx(model, deploy)
        self.card = card
        self.record = BuildRecord(self.folder)
        self.record.meta.setdefault("name", self.folder.name)
        self.reporter.stage("from-onnx", "done", f"{deploy.name} ({precision})")
        self._stages.append(("from-onnx", "done", 0.0, f"{deploy.name} ({precision})"))
        return self._finish(deploy, precision)

    def _finish(self, deploy: Path, precision: str) -> BuildResult:
        # The engine comes before validation where TensorRT exists, so that validation covers it
        # too; where it does not, validation records the skip (engine.status / engine.reason).
        engine = self._stage_engine(deploy, precision)
        report = self._stage_validate(precision, engine)
        if engine["status"] == "skipped":
            if self.options.require_engine:
                raise EdgesegError(f"--require-engine: TensorRT is not available here ({engine['reason']}); "
                                   f"every artifact up to {deploy} is built and validated")
            self.reporter.note(f"TensorRT is not available here ({engine['reason']}); finish on the target "
                               f"with: {engine['finish_with']}")
        return BuildResult(folder=self.folder, precision=precision, deploy_onnx=deploy, report=report,
                           stages=list(self._stages), engine_status=engine["status"])

    @contextmanager
    def _timed(self, stage: str) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"detail": ""}
        start = time.perf_counter()
        yield info
        seconds = time.perf_counter() - start
        self._stages.append((stage, "done", seconds, info["detail"]))
        self.reporter.stage(stage, "done", info["detail"])

    def _fresh(self, stage: str, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        """Whether ``stage`` can be skipped: recorded as up to date and not named by ``--rerun``."""
        return stage not in self.options.rerun and self.record.is_fresh(stage, inputs, options)

    def _cached(self, stage: str, detail: str) -> None:
        self._stages.append((stage, "cached", 0.0, detail))
        self.reporter.stage(stage, "cached", detail)

    def _check_compat(self, path: Path) -> dict[str, Any]:
        from edgeseg.export.trt_compat import check_trt_compat

        try:
            report = check_trt_compat(path)
        except EdgesegError:
            # Never keep an artifact TensorRT would reject: the next run must not trust it.
            path.unlink(missing_ok=True)
            raise
        return {"opset": report.opset, "nodes": report.num_nodes, "plugins": report.plugins,
                "table": report.source}

    # --- model ---------------------------------------------------------------------------------
    def _load_model(self, source: ModelSource) -> tuple[Any, ModelCard]:
        if self._model is not None:
            return self._model
        if source.kind == "checkpoint":
            from edgeseg.checkpoint import load_model

            model, card = load_model(source.ref)
        else:
            import torch

            from edgeseg.models import build_model

            # A preset has no trained weights: a seeded random init, to deploy and time the
            # architecture (accuracy numbers are meaningless for it).
            torch.manual_seed(0)
            model = build_model(source.ref).eval()
            config: Any = model.config
            card = ModelCard(preset=source.ref, num_classes=int(config.num_classes))
            self.reporter.note(f"--model {source.ref} is a preset: building it with random weights")
        if self.options.input_size is not None:
            card.input_size = tuple(self.options.input_size)  # type: ignore[assignment]
        if self.options.plugin == "fused-ddc":
            if not hasattr(model, "fuse"):
                raise EdgesegError(f"--plugin fused-ddc: preset '{card.preset}' has no DDC blocks to fuse")
            model = model.fuse()
        self._model = (model, card)
        return self._model

    def _stage_card(self, source: ModelSource) -> ModelCard:
        inputs = {"checkpoint": Path(source.ref)} if source.path else {}
        options = {"model": source.ref, "input_size": self.options.input_size}
        card_path = self.folder / "card.json"
        if self._fresh("card", inputs, options):
            self._cached("card", card_path.name)
            return ModelCard.from_dict(read_json(card_path))
        with self._timed("card") as info:
            _, card = self._load_model(source)
            write_json(card_path, card.to_dict())
            self.record.record("card", inputs=inputs, outputs={"card": card_path}, options=options)
            h, w = card.input_size
            info["detail"] = f"{card.preset}, {card.num_classes} classes, input {h}x{w}"
        return card

    def _export_config(self, card: ModelCard) -> Any:
        from edgeseg.export.onnx_export import ExportConfig

        return ExportConfig(input_size=tuple(card.input_size), batch=self.options.batch,  # type: ignore[arg-type]
                            batch_profile=self.options.shapes, opset=self.options.opset,
                            output=self.options.output)

    # --- export / simplify ---------------------------------------------------------------------
    def _stage_export(self, source: ModelSource, card: ModelCard) -> Path:
        from edgeseg.export.onnx_export import export_onnx

        config = self._export_config(card)
        path = self.folder / "model.onnx"
        inputs = {"card": self.folder / "card.json"}
        if source.path:
            inputs["checkpoint"] = source.path
        options = {"export": config.to_dict(), "plugin": self.options.plugin}
        if self._fresh("export", inputs, options):
            self._cached("export", path.name)
            return path
        with self._timed("export") as info:
            model, _ = self._load_model(source)
            table = None
            if self.options.plugin == "fused-ddc":
                from edgeseg.ops.onnx_plugin import custom_translation_table

                table = custom_translation_table()
            result = export_onnx(model, path, config, metadata={"edgeseg.card": json.dumps(card.to_dict())},
                                 translation_table=table)
            compat = self._check_compat(path)
            self.record.record("export", inputs=inputs, outputs={"onnx": path}, options=options,
                               results={"opset": result.opset, "nodes": result.num_nodes,
                                        "op_types": result.op_types, "external_data": result.external_data,
                                        "trt_compat": compat},
                               duration_s=result.seconds)
            info["detail"] = f"{path.name}: opset {result.opset}, {result.num_nodes} nodes"
        return path

    def _stage_simplify(self, onnx_path: Path) -> Path:
        from edgeseg.export.simplify import simplify_onnx

        path = self.folder / "model.sim.onnx"
        inputs = {"onnx": onnx_path}
        if self._fresh("simplify", inputs, {}):
            self._cached("simplify", path.name)
            return path
        with self._timed("simplify") as info:
            profile = self.options.shapes
            result = simplify_onnx(onnx_path, path, test_batch=profile[1] if profile else None)
            compat = self._check_compat(path)
            self.record.record("simplify", inputs=inputs, outputs={"onnx": path}, options={},
                               results={"nodes_before": result.nodes_before,
                                        "nodes_after": result.nodes_after,
                                        "op_types": result.op_types, "trt_compat": compat,
                                        "output_check": result.output_check},
                               duration_s=result.seconds)
            info["detail"] = (f"{path.name}: {result.nodes_before} → {result.nodes_after} nodes, "
                              "TensorRT-compatible")
        return path

    # --- data ----------------------------------------------------------------------------------
    def _calibration_spec(self) -> str | None:
        if self.options.calib_data:
            return self.options.calib_data
        if getattr(self, "source", None) is not None and self.source.is_demo:
            return DEMO_CALIBRATION
        if self.card.dataset:
            return self._dataset_split(self.card.dataset, "train")
        return None

    def _validation_spec(self) -> str | None:
        from edgeseg.precision.calibration import resolve_manifest

        if self.options.val_data:
            return self.options.val_data
        calib = self._calibration_spec()
        if calib:
            manifest = resolve_manifest(calib)
            if manifest is not None and manifest.val_data:
                return str(manifest.path)
        if self.card.dataset:
            return self._dataset_split(self.card.dataset, "val")
        return None

    @staticmethod
    def _dataset_split(spec: str, split: str) -> str:
        from edgeseg.data import parse_spec

        kind, root, _ = parse_spec(spec)
        return f"{kind}:{root}:{split}"

    def _calibration_set(self, required: bool) -> Any:
        from edgeseg.precision.calibration import load_calibration_set

        if self._calibration is not None:
            return self._calibration
        spec = self._calibration_spec()
        if spec is None:
            if required:
                raise EdgesegError("INT8 needs calibration images: pass --calib-data (a folder of images, "
                                   "KIND:ROOT[:split] or a manifest name such as demo)")
            return None
        card = self.card
        with self.reporter.task("loading calibration images", self.options.calib_size) as progress:
            self._calibration = load_calibration_set(spec, input_size=tuple(card.input_size),  # type: ignore[arg-type]
                                                     mean=card.mean, std=card.std,
                                                     size=self.options.calib_size, progress=progress)
        return self._calibration

    def _validation_set(self) -> Any:
        from edgeseg.precision.calibration import load_validation_set

        if self._validation is not None:
            return self._validation
        # The same images the validate stage scores (edgeseg.validate takes the first N).
        spec, size = self._validation_data()
        if spec is None:
            return None
        card = self.card
        with self.reporter.task("loading validation images", size) as progress:
            self._validation = load_validation_set(spec, input_size=tuple(card.input_size),  # type: ignore[arg-type]
                                                   mean=card.mean, std=card.std, size=size, progress=progress)
        return self._validation

    # --- precision -----------------------------------------------------------------------------
    def _stage_fp16(self, sim: Path) -> Path:
        from edgeseg.precision.fp16 import DATA_MAX, convert_fp16

        path = self.folder / "model.fp16.onnx"
        calibration = self._calibration_set(required=False)
        reference = calibration.sha256 if calibration is not None else "random"
        options = {"data_max": DATA_MAX, "reference_inputs": reference}
        inputs = {"onnx": sim}
        if self._fresh("fp16", inputs, options):
            self._cached("fp16", path.name)
            return path
        with self._timed("fp16") as info:
            images = calibration.images[:8] if calibration is not None else None
            result = convert_fp16(sim, path, reference_inputs=images, data_max=DATA_MAX)
            compat = self._check_compat(path)
            self.record.record("fp16", inputs=inputs, outputs={"onnx": path}, options=options,
                               results={"fp32_nodes": result.fp32_nodes, "nodes": result.num_nodes,
                                        "trt_compat": compat}, duration_s=result.seconds)
            info["detail"] = f"{path.name}: {len(result.fp32_nodes)} compute nodes kept FP32"
        return path

    def _calibration_key(self, sim: Path, calibration: Any) -> str:
        from edgeseg._io import sha256_file
        from edgeseg.precision.ranges import DEFAULT_PERCENTILE

        parts = {"onnx": sha256_file(sim), "calibration_set": calibration.sha256,
                 "method": self.options.calib_method}
        if self.options.calib_method == "percentile":
            parts["percentile"] = DEFAULT_PERCENTILE
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def _stage_calibrate(self, sim: Path) -> Path:
        from edgeseg.precision.int8 import write_calibration_cache
        from edgeseg.precision.ranges import collect_ranges

        calibration = self._calibration_set(required=True)
        key = self._calibration_key(sim, calibration)
        cache = self.folder / "calib_cache" / f"{key}.cache"
        options = {"method": self.options.calib_method, "calibration_set": calibration.sha256,
                   "source": calibration.source, "images": len(calibration)}
        inputs = {"onnx": sim}
        if cache.is_file() and "calibrate" not in self.options.rerun:
            # Keyed by graph + images + method: the ranges in it are exactly what we would compute.
            if not self.record.is_fresh("calibrate", inputs, options):
                self.record.record("calibrate", inputs=inputs, outputs={"cache": cache}, options=options,
                                   results={"key": key, "reused": True})
            self.reporter.note(f"calibration cache hit: {cache} (no recalibration)")
            self._cached("calibrate", f"{cache.relative_to(self.folder)} (cache hit)")
            return cache
        with self._timed("calibrate") as info:
            start = time.perf_counter()
            label = f"calibrating ({self.options.calib_method})"
            with self.reporter.task(label, len(calibration)) as progress:
                amax = collect_ranges(sim, calibration.images, self.options.calib_method, progress=progress)
            write_calibration_cache(cache, amax)
            self.record.record("calibrate", inputs=inputs, outputs={"cache": cache}, options=options,
                               results={"key": key, "reused": False, "tensors": len(amax)},
                               duration_s=time.perf_counter() - start)
            info["detail"] = f"{len(amax)} tensors, {len(calibration)} images ({calibration.source})"
        return cache

    def _stage_int8(self, sim: Path) -> Path:
        cache = self._stage_calibrate(sim)
        path = self.folder / "model.int8.onnx"
        validation = self._validation_set()
        options = {"high_precision_dtype": self.options.int8_high_precision,
                   "max_miou_drop": self.options.max_miou_drop,
                   "min_agreement": self._int8_agreement_gate(),
                   "validation_set": validation.sha256 if validation is not None else None}
        inputs = {"onnx": sim, "calibration_cache": cache}
        if self._fresh("quantize", inputs, options):
            self._cached("quantize", path.name)
            return path
        with self._timed("quantize") as info:
            start = time.perf_counter()
            results = self._quantize_with_guard(sim, cache, path, validation)
            results["trt_compat"] = self._check_compat(path)
            self.record.record("quantize", inputs=inputs, outputs={"onnx": path}, options=options,
                               results=results, duration_s=time.perf_counter() - start)
            guard = results["accuracy_guard"]
            if guard.get("status") == "skipped":
                info["detail"] = f"{path.name}: accuracy guard skipped ({guard['reason']})"
            else:
                info["detail"] = (f"{path.name}: mIoU drop {guard['miou_drop']:.2f} "
                                  f"(budget {guard['max_miou_drop']}), pixel agreement "
                                  f"{guard['pixel_agreement']:.2f}% (gate {guard['min_pixel_agreement']}%), "
                                  f"{len(guard['excluded_layers'])} layers kept in higher precision")
        return path

    def _int8_agreement_gate(self) -> float:
        """The guard aims at the same pixel agreement that validation will gate the INT8 graph on."""
        from edgeseg.validate import Tolerances

        if self.options.min_agreement is not None:
            return self.options.min_agreement
        return Tolerances().pixel_agreement["int8"]

    def _quantize_with_guard(self, sim: Path, cache: Path, path: Path, validation: Any) -> dict[str, Any]:
        from edgeseg.export.onnx_export import load_onnx, module_scopes
        from edgeseg.precision.guard import ReferenceEvaluator, layer_sensitivity, run_accuracy_guard
        from edgeseg.precision.int8 import quantize_int8

        calibration = self._calibration
        hp = self.options.int8_high_precision
        last: dict[str, Any] = {}

        # modelopt's placement pass feeds whole batches: a static batch needs that many images.
        sample = calibration.images[:1 if self.options.shapes else self.options.batch]

        def quantize(excluded: list[str]) -> Path:
            result = quantize_int8(sim, path, calibration_cache=cache, sample=sample,
                                   nodes_to_exclude=excluded, high_precision_dtype=hp)
            last.update(quantized_layers=len(result.quantized_nodes), qdq_nodes=result.num_qdq,
                        high_precision_dtype=hp)
            return path

        if validation is None:
            quantize([])
            self.reporter.note("accuracy guard skipped: no labelled validation data (pass --val-data)")
            return {**last, "accuracy_guard": {"status": "skipped", "reason": "no validation data"}}
        if validation.num_classes is not None and validation.num_classes != self.card.num_classes:
            raise EdgesegError(f"validation data has {validation.num_classes} classes but the model has "
                               f"{self.card.num_classes}")
        model, _ = self._load_model(self.source)
        with self.reporter.task("FP32 reference on validation images", len(validation)) as progress:
            evaluator = ReferenceEvaluator.from_torch(
                model, validation.images, validation.masks, self.card.num_classes,
                ignore_index=self.card.ignore_index, progress=progress)

        def evaluate(onnx_path: Path) -> Any:
            with self.reporter.task("evaluating INT8 graph (ONNX Runtime, no graph optimizations)",
                                    len(validation)) as progress:
                return evaluator.evaluate(onnx_path, progress=progress)

        def rank(onnx_path: Path) -> list[tuple[str, float]]:
            with self.reporter.task("ranking INT8 layers by sensitivity", 0) as progress:
                return layer_sensitivity(onnx_path, validation.images[:2], progress=progress)

        def on_step(step: dict[str, Any]) -> None:
            self.reporter.note(f"accuracy guard: {step['excluded']} layer(s) excluded → mIoU drop "
                               f"{step['miou_drop']:.2f}, pixel agreement {step['pixel_agreement']:.2f}%")

        guard = run_accuracy_guard(budget=self.options.max_miou_drop,
                                   min_agreement=self._int8_agreement_gate(),
                                   quantize=quantize, evaluate=evaluate, rank=rank, on_step=on_step)
        scopes = module_scopes(load_onnx(self.folder / "model.onnx"))
        return {**last, "accuracy_guard": {"status": "done", "validation": validation.source,
                                           **guard.to_dict(),
                                           "excluded_modules": [scopes.get(n, "") for n in guard.excluded]}}

    # --- validation / engine -------------------------------------------------------------------
    def _validation_data(self) -> tuple[str | None, int]:
        """Dataset spec and image count for :func:`edgeseg.validate.validate`."""
        from edgeseg.precision.calibration import resolve_manifest

        spec = self._validation_spec()
        size = self.options.val_size
        manifest = resolve_manifest(spec) if spec is not None else None
        if manifest is not None:
            spec = manifest.val_data
            if self.options.val_size == BuildOptions.val_size and manifest.val_size:
                size = manifest.val_size
        return spec, size

    def _stage_validate(self, precision: str, engine: dict[str, Any]) -> dict[str, Any]:
        """Run :func:`edgeseg.validate.validate` over the build folder (writes ``report.json``)."""
        from edgeseg.validate import Tolerances, report_failures, validate

        data, size = self._validation_data()
        checkpoint = self._checkpoint()
        if checkpoint is None:
            reason = "no PyTorch reference (build.json records no checkpoint that exists here)"
            self.record.record("validate", inputs={}, outputs={}, options={}, status="skipped", reason=reason)
            self._stages.append(("validate", "skipped", 0.0, reason))
            self.reporter.stage("validate", "skipped", reason)
            return {"engine": engine}
        artifacts = sorted(self.folder.glob("model*.onnx")) + sorted(self.folder.glob("model.*.engine"))
        inputs = {p.name: p for p in artifacts}
        tolerances = Tolerances()
        if self.options.min_agreement is not None:
            tolerances = tolerances.with_overrides(**{precision: self.options.min_agreement})
        options = {"data": data, "images": size, "pixel_agreement": tolerances.pixel_agreement,
                   "engine": engine}
        report_path = self.folder / "report.json"
        fresh = self._fresh("validate", inputs, options) and report_path.is_file()
        report = read_json(report_path) if fresh else {}
        # Only a passed validation is reused: a failure may come from outside the artifacts (a
        # missing package, a runner that could not load plugin graphs), and must be retried.
        if report.get("passed"):
            self._cached("validate", report_path.name)
        else:
            with self._timed("validate") as info:
                start = time.perf_counter()
                engine_built = engine["status"] == "built"
                plugin_libs = [self._plugin_library()] if self.options.plugin and engine_built else []
                report = validate(self.folder, checkpoint=checkpoint, data=data, num_images=size,
                                  tolerances=tolerances, engine=engine, plugin_libs=plugin_libs,
                                  progress=self.reporter.show_progress)
                self.record.record("validate", inputs=inputs, outputs={"report": report_path},
                                   options=options, results={"passed": report.get("passed")},
                                   duration_s=time.perf_counter() - start)
                info["detail"] = f"{report_path.name}: {'passed' if report.get('passed') else 'FAILED'}"
        # The build answers for the precision it built; other graphs in the folder (from earlier
        # builds) are validated and reported too, but only noted.
        own = [c for c in report.get("candidates", []) if c.get("precision") == precision]
        others = [c for c in report.get("candidates", []) if c.get("precision") != precision]
        failed = report_failures({"candidates": own})
        if not own or failed:
            reason = "; ".join(failed) or f"no {precision} artifact could be validated"
            raise EdgesegError(f"validation failed (see {report_path}): {reason}")
        for line in report_failures({"candidates": others}):
            self.reporter.note(f"validation (other precision): {line}")
        return report

    def _checkpoint(self) -> Path | None:
        """The PyTorch reference of this build: the source checkpoint, else what build.json recorded."""
        source = getattr(self, "source", None)
        if source is not None:
            return source.path
        recorded = (self.record.meta.get("options") or {}).get("checkpoint")
        return Path(recorded) if recorded and Path(recorded).is_file() else None

    def _stage_engine(self, deploy: Path, precision: str) -> dict[str, Any]:
        """Build the engine where TensorRT is importable; otherwise record why and how to finish."""
        from edgeseg.trt import tensorrt_available

        available, reason = tensorrt_available()
        if available:
            self._check_target_machine(deploy)
            return self._build_engine(deploy, precision, self.folder / engine_name(precision))
        hint = finish_hint(deploy, self.options.target)
        self.record.record(f"engine:{precision}", inputs={"onnx": deploy}, outputs={},
                           options=self._engine_options(), status="skipped", reason=reason)
        self._stages.append(("engine", "skipped", 0.0, reason))
        self.reporter.stage("engine", "skipped", reason)
        return {"status": "skipped", "reason": reason, "finish_with": hint}

    def _check_target_machine(self, deploy: Path) -> None:
        """Refuse to build an engine for ``--target`` on a machine whose engines would not run there."""
        if self.options.target is None:
            return
        from edgeseg.stages.targets import load_target, machine_problems
        from edgeseg.trt.metadata import RuntimeInfo

        problems = machine_problems(load_target(self.options.target), RuntimeInfo.current())
        if problems:
            raise EdgesegError("engine not built: " + "; ".join(problems) + " (engines are not portable). "
                               f"Finish on the target: {finish_hint(deploy, self.options.target)}")

    def _plugin_library(self) -> Path:
        """The compiled ``EdgesegFusedDDC`` TensorRT plugin library (``--plugin-lib``)."""
        path = Path(self.options.plugin_lib or DEFAULT_PLUGIN_LIB)
        if not path.is_file():
            raise EdgesegError(f"{path}: TensorRT plugin library not found; build it with `cmake -S cpp_ext "
                               "-B build/trt && cmake --build build/trt` or pass --plugin-lib")
        return path

    def _engine_options(self) -> dict[str, Any]:
        return {"workspace_gib": self.options.workspace, "dla_core": self.options.dla_core,
                "shapes": self.options.shapes, "plugin": self.options.plugin,
                "plugin_lib": self.options.plugin_lib}

    def _build_engine(self, deploy: Path, precision: str, engine_path: Path) -> dict[str, Any]:
        from edgeseg.trt import build_engine

        kwargs: dict[str, Any] = {"precision": precision, "dla_core": self.options.dla_core,
                                  "timing_cache": self.options.timing_cache or self.folder / "timing.cache"}
        if self.options.workspace is not None:
            kwargs["workspace_gib"] = self.options.workspace
        if self.options.shapes is not None:
            h, w = self.card.input_size
            kwargs["shapes"] = {"images": tuple((b, 3, h, w) for b in self.options.shapes)}
        if self.options.plugin == "fused-ddc":
            kwargs["plugin_libs"] = [self._plugin_library()]
        with self._timed("engine") as info:
            meta = build_engine(deploy, engine_path, **kwargs)
            self.record.record(f"engine:{precision}", inputs={"onnx": deploy},
                               outputs={"engine": engine_path}, options=self._engine_options(),
                               results={"tensorrt_version": meta.get("tensorrt_version"),
                                        "gpu": meta.get("gpu")},
                               duration_s=float(meta.get("build_seconds", 0.0)))
            info["detail"] = f"{engine_path.name} (TensorRT {meta.get('tensorrt_version')})"
        return {"status": "built", "path": engine_path.name, "metadata": engine_path.name + ".json",
                "tensorrt_version": meta.get("tensorrt_version"), "gpu": meta.get("gpu")}


