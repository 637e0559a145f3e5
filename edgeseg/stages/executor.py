"""The build executor and the one list of stages.

:data:`STAGES` is the pipeline, in order; :class:`Build` runs it over a build folder::

    from-onnx ─┐                      (only with --from-onnx)
    card → export → simplify ─┬─ fp16                      ─┬→ engine → validate
                              └─ calibrate → quantize (guard)┘

For each stage that applies, the executor skips it when ``build.json`` records the same inputs
(by sha256), options and intact outputs; otherwise it runs it, times it, samples its peak
resident memory (without resetting the kernel's own high-water mark, so ``time -v`` from outside
stays true), and records the outcome. A stage that fails or is interrupted leaves none of its
deployable files behind and is recorded as failed; a rejected artifact (an accuracy gate) is
renamed ``<file>.rejected`` so that nothing deploys it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._memory import PeakRss
from edgeseg.build_folder import CARD_FILE, BuildRecord, Precision, folder_lock, graph_precision
from edgeseg.checkpoint import load_card
from edgeseg.errors import AccuracyGateError, EdgesegError
from edgeseg.sources import ModelSource
from edgeseg.stages.base import Stage
from edgeseg.stages.context import BuildContext, Reporter
from edgeseg.stages.deploy import EngineStage, FromOnnxStage, ValidateStage
from edgeseg.stages.export import CardStage, ExportStage, SimplifyStage
from edgeseg.stages.options import BuildOptions, build_name, resolve_model
from edgeseg.stages.precision import CalibrateStage, Fp16Stage, QuantizeStage
from edgeseg.stopping import last_signal, shielded, writing

__all__ = ["STAGES", "Build", "BuildResult", "stage_names"]

_calibrate = CalibrateStage()
#: The build, in order. Written once: the executor, ``--rerun`` and the docs read it from here.
STAGES: tuple[Stage, ...] = (
    FromOnnxStage(), CardStage(), ExportStage(), SimplifyStage(), Fp16Stage(), _calibrate,
    QuantizeStage(_calibrate), EngineStage(), ValidateStage(),
)


def stage_names() -> list[str]:
    """Stages ``--rerun`` can name (those that can be up to date)."""
    return [s.name for s in STAGES if s.name not in ("from-onnx", "engine")]


@dataclass
class BuildResult:
    """What a build produced.

    Args:
        folder: the build folder.
        precision: the precision built.
        deploy_onnx: the graph TensorRT parses.
        report: the ``report.json`` content.
        stages: per stage ``(name, status, seconds, detail)`` for the summary table.
        engine_status: ``"built"`` or ``"skipped"``.
    """

    folder: Path
    precision: Precision
    deploy_onnx: Path
    report: dict[str, Any] = field(default_factory=dict)
    stages: list[tuple[str, str, float, str]] = field(default_factory=list)
    engine_status: str = "skipped"


def _portable(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute."""
    absolute = path.resolve()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)


class Build:
    """One ``edgeseg build`` run: resolves the options, then runs :data:`STAGES`.

    Args:
        options: the build options.
        reporter: progress sink. Defaults to a silent :class:`Reporter`.
    """

    def __init__(self, options: BuildOptions, reporter: Reporter | None = None) -> None:
        self.options = options
        self.reporter = reporter or Reporter()
        self._summary: list[tuple[str, str, float, str]] = []
        self.folder: Path | None = None

    def run(self, *, until: str | None = None) -> BuildResult:
        """Run every stage the options ask for.

        Args:
            until: a stage name to stop after (``"simplify"`` is what ``edgeseg export`` does).
                Defaults to the whole build.
        """
        names = [s.name for s in STAGES]
        if until is not None and until not in names:
            raise EdgesegError(f"Build.run: until must be one of {', '.join(names)}, got {until!r}")
        unknown = sorted(set(self.options.rerun) - set(stage_names()))
        if unknown:
            raise EdgesegError(f"--rerun: unknown stage(s) {', '.join(unknown)} "
                               f"(stages: {', '.join(stage_names())})")
        with contextlib.ExitStack() as held:
            ctx = self._context(until, held)
            for stage in STAGES:
                if stage.applies(ctx):
                    self._run_stage(stage, ctx)
                if stage.name == until:
                    break
        if ctx.engine.get("status") == "skipped" and until is None:
            if self.options.require_engine:
                raise EdgesegError(f"--require-engine: TensorRT is not available here "
                                   f"({ctx.engine['reason']}); every artifact up to {ctx.deploy} is built "
                                   "and validated")
            self.reporter.note(f"TensorRT is not available here ({ctx.engine['reason']}); finish on the "
                               f"target with: {ctx.engine['finish_with']}")
        assert ctx.deploy is not None  # every path through STAGES sets it; an executor invariant
        return BuildResult(folder=ctx.folder, precision=ctx.precision if until is None else Precision.FP32,
                           deploy_onnx=ctx.deploy, report=ctx.report, stages=list(self._summary),
                           engine_status=ctx.engine.get("status", "skipped"))

    # --- set-up: every conflict is found here, before any work --------------------------------
    def _context(self, until: str | None, held: contextlib.ExitStack) -> BuildContext:
        o = self.options
        if o.from_onnx is not None:
            return self._from_onnx_context(Path(o.from_onnx), held)
        source = resolve_model(o.model)
        precision = o.precision or Precision.INT8
        if o.plugin is not None and precision is not Precision.FP32 and until is None:
            # Model Optimizer runs custom ops through its TensorRT execution provider, so FP16 / INT8
            # conversion of a graph with plugin nodes cannot happen without TensorRT.
            raise EdgesegError(f"--plugin {o.plugin} builds --precision fp32 only: {precision} "
                               "conversion of a graph with plugin nodes needs TensorRT")
        if precision is Precision.INT8 and until is None:
            _require_calibration_source(o, source)
        folder = Path(o.out_dir) / build_name(o, source.name, f"--model {source.ref}")
        held.enter_context(folder_lock(folder))  # before build.json is read: one writer at a time
        self.folder = folder  # the CLI names it when the build is interrupted
        record = BuildRecord(folder)
        # "options" (with the resolved precision and checkpoint) is what the runtime and validation
        # read back from build.json. The checkpoint is recorded relative to the working directory
        # when inside it, so that a build folder copied with the repository still finds it.
        checkpoint = _portable(source.path) if source.path else None
        record.meta.update(name=folder.name, source={"kind": source.kind, "ref": source.ref},
                           options={**o.to_dict(), "precision": precision.value, "checkpoint": checkpoint})
        return BuildContext(options=o, reporter=self.reporter, folder=folder, record=record,
                            precision=precision, source=source)

    def _from_onnx_context(self, path: Path, held: contextlib.ExitStack) -> BuildContext:
        from edgeseg.export.onnx_export import load_onnx
        from edgeseg.export.trt_compat import check_trt_compat

        model = load_onnx(path)
        precision = graph_precision(model)
        if self.options.precision is not None and self.options.precision is not precision:
            raise EdgesegError(f"{path}: the graph holds {precision} (read from its nodes), but --precision "
                               f"{self.options.precision} was given")
        # The user's own file: checked, never deleted (unlike the artifacts the stages write).
        check_trt_compat(model, label=str(path))
        if (path.parent / CARD_FILE).is_file():
            folder = path.parent  # a graph inside a build folder is deployed where it is
            if self.options.name is not None and self.options.name != folder.name:
                self.reporter.note(f"--name {self.options.name} not used: {path} is inside the build "
                                   f"folder {folder}, where its engine and report go")
        else:
            folder = Path(self.options.out_dir) / build_name(self.options, path.name.split(".")[0],
                                                             f"--from-onnx {path}")
        held.enter_context(folder_lock(folder))
        self.folder = folder
        record = BuildRecord(folder)
        record.meta.setdefault("name", folder.name)
        return BuildContext(options=self.options, reporter=self.reporter, folder=folder, record=record,
                            precision=precision)

    # --- one stage ------------------------------------------------------------------------------
    def _run_stage(self, stage: Stage, ctx: BuildContext) -> None:
        inputs, options = stage.inputs(ctx), stage.options(ctx)
        if stage.name not in self.options.rerun and stage.fresh(ctx, inputs, options):
            self._show(stage.name, "cached", 0.0, stage.reuse(ctx))
            return
        ctx.record.forget(stage.key(ctx))
        with shielded() if stage.finishes_on_stop else contextlib.nullcontext():
            self._execute(stage, ctx, inputs, options)

    def _execute(self, stage: Stage, ctx: BuildContext, inputs: dict[str, Path],
                 options: dict[str, Any]) -> None:
        """Run the stage and record its outcome, or discard / reject what it wrote."""
        start = time.perf_counter()
        with contextlib.ExitStack() as in_flight:
            # A hard stop (a second signal) deletes the stage's unrecorded files, as a failure does.
            for path in stage.artifacts(ctx):
                in_flight.enter_context(writing(path))
            try:
                with PeakRss() as rss:
                    outcome = stage.run(ctx)
            except AccuracyGateError as e:
                self._reject(stage, ctx, str(e))
                raise
            except BaseException as e:  # failures and interrupts (KeyboardInterrupt, SystemExit) alike
                self._discard(stage, ctx, _failure_reason(e), time.perf_counter() - start)
                raise
            seconds = time.perf_counter() - start
            ctx.record.record(stage.key(ctx), inputs=inputs, outputs=outcome.outputs, options=options,
                              results=outcome.results, duration_s=seconds,
                              peak_rss_mib=round(rss.peak_mib, 1), status=outcome.status,
                              reason=outcome.reason)
        self._show(stage.name, outcome.status, seconds, outcome.detail)

    def _discard(self, stage: Stage, ctx: BuildContext, reason: str, seconds: float) -> None:
        """A failed or interrupted stage: remove what it half-wrote, record it as failed."""
        for path in stage.artifacts(ctx):
            path.unlink(missing_ok=True)
        ctx.record.record(stage.key(ctx), inputs={}, outputs={}, options={}, duration_s=seconds,
                          status="failed", reason=reason)
        self._show(stage.name, "failed", seconds, reason)

    def _reject(self, stage: Stage, ctx: BuildContext, reason: str) -> None:
        """An artifact that missed its accuracy gate is kept for inspection under a name nothing deploys."""
        targets = stage.artifacts(ctx) or ([ctx.deploy] if ctx.deploy is not None else [])
        if self.options.from_onnx is not None:
            # The user's own graph is never renamed or deleted.
            own = Path(self.options.from_onnx).resolve()
            targets = [p for p in targets if p.resolve() != own]
        for path in targets:
            if path.is_file():
                os.replace(path, path.with_name(path.name + ".rejected"))
        # The stage that produced a rejected deploy graph must run again on the next build.
        for rec_name, rec in list(ctx.record.stages.items()):
            if any(out["path"] in {p.name for p in targets} for out in rec.outputs.values()):
                ctx.record.forget(rec_name)
        ctx.record.record(stage.key(ctx), inputs={}, outputs={}, options={}, status="failed", reason=reason)
        self._show(stage.name, "failed", 0.0, reason)

    def _show(self, name: str, status: str, seconds: float, detail: str) -> None:
        self._summary.append((name, status, seconds, detail))
        self.reporter.stage(name, status, detail)


def _failure_reason(e: BaseException) -> str:
    """What build.json records for a failed stage: the signal that stopped it, or the exception."""
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted by {signal.Signals(last_signal()).name}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _require_calibration_source(o: BuildOptions, source: ModelSource) -> None:
    """INT8 without calibration images fails here, not after the export (ImageSets.calibration_spec
    falls back to the demo manifest, then to the card's dataset, which only a bundle's card holds)."""
    if o.calib_data or source.is_demo:
        return
    if source.kind == "checkpoint" and source.path is not None and load_card(source.path).dataset:
        return
    raise EdgesegError("--precision int8 needs calibration images: pass --calib-data (a folder of your "
                       "images, KIND:ROOT[:split] or a manifest name such as demo), or --precision fp16")
