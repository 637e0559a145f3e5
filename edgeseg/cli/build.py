"""`edgeseg build`: model (preset, bundle, .pt2, ONNX) → ONNX → FP16 / INT8 → validated → TensorRT engine.

The command only parses options and draws progress; the stages live in :mod:`edgeseg.stages`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from edgeseg.cli._common import CARD_FLAGS, EXIT_CODES_HELP, card_options, console, interrupted, parse_sets

if TYPE_CHECKING:
    from edgeseg.stages import Build, BuildResult, Reporter

__all__ = ["register"]

_HELP = """Build a deployable model folder engines/<name>/ and, where TensorRT exists, its engine.

\b
Examples:
  # the shipped demo model and calibration set
  edgeseg build --precision int8
  # your bundle in FP16, validated on labelled images
  edgeseg build -m runs/city/model.pt --precision fp16 \\
      --val-data cityscapes:/data/cityscapes:val
  # INT8 calibrated on 64 training images
  edgeseg build -m runs/city/model.pt --calib-size 64 \\
      --calib-data cityscapes:/data/cityscapes:train
  # a torch.export program, calibrated on a folder of images
  edgeseg build -m net.pt2 --precision int8 --calib-data images/
  # an FP32 ONNX fed BGR values in [0, 1]
  edgeseg build -m model.onnx --calib-data images/ --channels bgr \\
      --mean 0,0,0 --std 255,255,255
  # a preset with random weights: for benchmarks only
  edgeseg build -m dbmsnet_r18_os16 --num-classes 19 --input 512x1024
  # on the Jetson: the engine only
  edgeseg build --from-onnx engines/demo_dbmsnet/model.int8.onnx
  # defaults from a shipped target profile, and the list of them
  edgeseg build --target jetson-orin-nano
  edgeseg build --list-targets

\b
Stages (recorded in build.json; a re-run skips what is still up to date):
  card → export (model.onnx) → simplify (model.sim.onnx)
  → fp16 (model.fp16.onnx)
    | calibrate (calib_cache/) + quantize (model.int8.onnx, accuracy guard)
  → engine (model.<precision>.engine, TensorRT only) → validate (report.json)
Without TensorRT the engine is skipped and the command to finish on the target
is printed. Your own model (card flags, outputs, recipes):
docs/your-own-model.md. Ctrl-C or SIGTERM stops the build (exit 130 / 143);
running the same command again resumes it. A failed accuracy gate (INT8 guard
or validation) exits with status 3.
"""


class _RichReporter:
    """Draws a build's progress with rich on stderr."""

    show_progress = True

    def stage(self, name: str, status: str, detail: str = "") -> None:
        style = {"done": "green", "cached": "cyan", "skipped": "yellow"}.get(status, "white")
        console.print(f"[{style}]{status:>7}[/{style}] {name:<10} {detail}")

    def note(self, message: str) -> None:
        console.print(f"[bold]note:[/bold] {message}", highlight=False)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)

            def advance(done: int, new_total: int) -> None:
                bar.update(task, completed=done, total=new_total)

            yield advance


def _kept_by(builder: Build) -> str:
    """The one line after Ctrl-C / SIGTERM: a build resumes from the stages build.json records."""
    folder = getattr(builder, "folder", None)  # the build folder, once the build has resolved it
    where = f"{folder}/build.json" if folder is not None else "the build folder's build.json"
    return f"{where} keeps the stages finished so far; run the same command again to resume"


def _summary_table(result: BuildResult) -> Any:
    from rich.table import Table

    table = Table(title=f"edgeseg build → {result.folder} ({result.precision})")
    for column in ("stage", "status", "time", "result"):
        table.add_column(column)
    for stage, status, seconds, detail in result.stages:
        table.add_row(stage, status, f"{seconds:.1f}s" if seconds else "—", detail)
    return table


def _targets_table() -> Any:
    from rich.table import Table

    from edgeseg.stages.targets import TARGETS_DIR, list_targets, load_target

    table = Table(title=f"target profiles ({TARGETS_DIR})")
    table.add_column("--target", no_wrap=True)
    for column in ("description", "TensorRT", "CC", "DLA", "build defaults"):
        table.add_column(column)
    for name in list_targets():
        profile = load_target(name)
        defaults = ", ".join(f"{k}={v}" for k, v in vars(profile.build).items() if v is not None)
        table.add_row(name, profile.description, profile.tensorrt, profile.compute_capability,
                      str(profile.dla_cores), defaults)
    return table


def register(app: typer.Typer) -> None:
    @app.command("build", help=_HELP, epilog=EXIT_CODES_HELP)
    @card_options
    def build(
        precision: str = typer.Option(
            None, "--precision", "-p",
            help="fp32, fp16 or int8. (default: what --from-onnx holds, the target's, else int8)"),
        model: str = typer.Option(
            None, "--model", "-m", help="Zoo preset, edgeseg bundle (.pt), torch.export program (.pt2) or "
                                        "FP32 ONNX graph (.onnx). (default: the demo model)"),
        name: str = typer.Option(None, "--name", help="Build folder name. (default: model stem)"),
        out_dir: Path = typer.Option(Path("engines"), "--out-dir", help="Parent folder of builds."),
        card_flags: dict[str, Any] = CARD_FLAGS,  # --input, --card, --layout ... --output-name
        sets: list[str] = typer.Option([], "--set", help="Preset config field key=value (repeatable)."),
        batch: int = typer.Option(None, "--batch", help="Static batch size. (default: the target's, else 1)"),
        shapes: str = typer.Option(None, "--shapes",
                                   help="Dynamic batch 'min,opt,max' (e.g. 1,4,8); TensorRT profile. "
                                        "(default: the target's, else static)"),
        opset: int = typer.Option(None, "--opset",
                                  help="ONNX opset 17..20. (default: the target's, else 18)"),
        output: str = typer.Option("logits", "--output", help="Graph output: logits or argmax (int32)."),
        calib_data: str = typer.Option(None, "--calib-data",
                                       help="Calibration images: folder, KIND:ROOT[:split], or a manifest "
                                            "(shipped: demo). (default: demo set / card dataset)"),
        calib_size: int = typer.Option(
            None, "--calib-size",
            help="Calibration images (seeded sample). (default: the manifest's size, else 32)"),
        calib_method: str = typer.Option("max", "--calib-method", help="max, entropy or percentile."),
        int8_high_precision: str = typer.Option(
            "fp16", "--int8-high-precision", help="Non-quantized ops of the INT8 graph: fp16 or fp32."),
        guard: bool = typer.Option(
            True, "--guard/--no-guard", help="INT8 accuracy guard (keeps the most sensitive layers out of "
            "INT8 until the gates hold). --no-guard skips it on purpose; the report says so."),
        max_miou_drop: float = typer.Option(
            1.0, "--max-miou-drop", help="Accuracy guard: largest INT8 mIoU drop (points) allowed; the guard "
                                         "also holds INT8 to the --min-agreement gate."),
        val_data: str = typer.Option(None, "--val-data", help="Labelled validation data KIND:ROOT[:split]."),
        val_size: int = typer.Option(
            None, "--val-size", help="Images in each of the tuning and held-out sets. (default: the "
            "manifest's val_size, else ~8 Mpx each: 64 at 128x128, 16 at 512x1024 and above)"),
        min_agreement: float = typer.Option(None, "--min-agreement",
                                            help="Validation gate: pixel agreement % with FP32 for this "
                                                 "precision; INT8's accuracy guard aims at it too. "
                                                 "(default: fp32 99.99, fp16 99.9, int8 99.5)"),
        from_onnx: Path = typer.Option(
            None, "--from-onnx", help="Start from this precision ONNX: skip export and calibration. A graph "
            "inside a build folder (beside its card.json) is finished in that folder; --name and --out-dir "
            "apply to other graphs."),
        require_engine: bool = typer.Option(
            False, "--require-engine", help="Fail when TensorRT is missing instead of skipping the engine."),
        workspace: float = typer.Option(None, "--workspace",
                                        help="TensorRT workspace (GiB). (default: the target's)"),
        dla_core: int = typer.Option(None, "--dla-core",
                                     help="Build for this DLA core (Jetson). (default: the target's)"),
        timing_cache: Path = typer.Option(
            None, "--timing-cache", help="TensorRT timing cache. (default: <build>/timing.cache)"),
        plugin: str = typer.Option(None, "--plugin", help="fused-ddc: DDC blocks as TensorRT plugin (fp32)."),
        plugin_lib: Path = typer.Option(
            None, "--plugin-lib", help="Plugin library. (default: build/trt/libedgeseg_trt_plugins.so)"),
        rerun: list[str] = typer.Option(
            [], "--rerun", help="Run this stage again even if up to date (repeatable): card, export, "
                                "simplify, fp16, calibrate, quantize, validate."),
        target: str = typer.Option(
            None, "--target", "-t", help="Target profile: a name from --list-targets or a .toml path; "
                                         "fills the options not given here."),
        list_targets: bool = typer.Option(False, "--list-targets", help="List the target profiles and exit."),
        json_out: bool = typer.Option(False, "--json", help="Print report.json on stdout at the end."),
    ) -> None:
        import json

        if list_targets:
            console.print(_targets_table())
            return

        from edgeseg.build_folder import Precision
        from edgeseg.export import parse_batch_profile
        from edgeseg.stages import Build, BuildOptions

        options = BuildOptions(
            precision=None if precision is None else Precision.parse(precision, "--precision"),
            model=model, name=name, out_dir=out_dir, batch=batch, **card_flags,
            overrides=parse_sets(sets), shapes=parse_batch_profile(shapes), opset=opset, output=output,
            calib_data=calib_data, calib_size=calib_size, calib_method=calib_method,
            int8_high_precision=int8_high_precision, max_miou_drop=max_miou_drop, guard=guard,
            val_data=val_data,
            val_size=val_size, min_agreement=min_agreement, from_onnx=from_onnx,
            require_engine=require_engine, workspace=workspace, dla_core=dla_core,
            timing_cache=timing_cache, plugin=plugin, plugin_lib=plugin_lib, rerun=tuple(rerun),
            target=target,
        )
        # _RichReporter has Reporter's methods without subclassing it: edgeseg.stages imports torch,
        # which `edgeseg --help` must not wait for.
        builder = Build(options, cast("Reporter", _RichReporter()))
        try:
            result = builder.run()
        except KeyboardInterrupt:
            raise interrupted(_kept_by(builder)) from None
        console.print(_summary_table(result))
        if json_out:
            print(json.dumps(result.report, indent=2, default=str))
