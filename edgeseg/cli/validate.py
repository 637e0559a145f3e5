"""`edgeseg validate`: compare every artifact of a build with its PyTorch reference."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console
from edgeseg.errors import AccuracyGateError, EdgesegError

__all__ = ["register"]

_HELP = """Validate a build: its ONNX graphs and engines vs the PyTorch model.

Runs the FP32 PyTorch reference and every deployed artifact of
engines/<name>/ on the same images (preprocessed with the model card) and
reports, per artifact: pixel agreement of the argmax maps with the
reference (the pass/fail gate), max/mean absolute logit difference, and
mIoU / per-class IoU deltas (against the labels when --data has them, else
against the reference's own predictions).

Without --data or --images it scores the build's own held-out images (the
set report.json records under splits.heldout, never tuned on) and rewrites
report.json. With other data it writes report.<data>.json beside it, so
the build's own verdict is never replaced (--replace-report to replace it).
Also writes validation.png (input | reference | each artifact | where each
disagrees). Exits with status 3 when an artifact fails its tolerance (2 is
a usage or input error).

\b
Examples:
  edgeseg validate -b engines/demo_dbmsnet            # its own held-out set
  edgeseg validate -b engines/demo --data synthetic::val -n 64
  edgeseg validate -b engines/city --data cityscapes:/data/city:val \\
      --tol-int8 98.5
  edgeseg validate -b engines/demo --images photos/ --json > report.json
"""


def register(app: typer.Typer) -> None:
    @app.command("validate", help=_HELP, epilog=EXIT_CODES_HELP)
    def validate(
        build: Path = typer.Option(..., "--build", "-b", help="Build directory (engines/<name>/)."),
        data: str | None = typer.Option(
            None, "--data", "-d",
            help="Labelled images: KIND:ROOT[:split]. Default: the build's own held-out set."),
        images: Path | None = typer.Option(None, "--images", help="A folder of unlabelled images instead."),
        num_images: int = typer.Option(64, "--num-images", "-n", help="Number of images (the first N)."),
        checkpoint: Path | None = typer.Option(
            None, "--checkpoint", help="PyTorch bundle (.pt). Default: the one build.json records."),
        tol_fp32: float | None = typer.Option(
            None, "--tol-fp32", help="Min pixel agreement % for fp32 artifacts (default 99.99)."),
        tol_fp16: float | None = typer.Option(
            None, "--tol-fp16", help="Min pixel agreement % for fp16 artifacts (default 99.9)."),
        tol_int8: float | None = typer.Option(
            None, "--tol-int8", help="Min pixel agreement % for int8 artifacts (default 99.5)."),
        max_miou_drop: float | None = typer.Option(
            None, "--max-miou-drop", help="Also fail if mIoU drops by more points (default: not gated)."),
        plugin_lib: list[Path] = typer.Option(
            [], "--plugin-lib", help="TensorRT plugin library for engines (repeatable)."),
        grid_images: int = typer.Option(4, "--grid-images", help="Images in validation.png (0: none)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
        replace_report: bool = typer.Option(
            False, "--replace-report", help="With --data/--images, write report.json itself."),
    ) -> None:
        from edgeseg.validate import (
            Tolerances,
            recorded_heldout,
            report_failures,
            report_name_for,
            report_table,
        )
        from edgeseg.validate import validate as run_validation

        tolerances = Tolerances().with_overrides(fp32=tol_fp32, fp16=tol_fp16, int8=tol_int8,
                                                 max_miou_drop=max_miou_drop)
        name = "report.json" if replace_report else report_name_for(data, images)
        kwargs: dict = {"data": data, "images": images, "num_images": num_images}
        if data is None and images is None:
            from edgeseg.build_folder import read_report

            source, heldout = recorded_heldout(build)
            kwargs = {"data": source, "subsets": {"heldout": heldout},
                      "splits": (read_report(build) or {}).get("splits")}
        report = run_validation(build, checkpoint=checkpoint, tolerances=tolerances, grid_images=grid_images,
                                plugin_libs=plugin_lib, progress=not as_json, report_name=name, **kwargs)
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            console.print(report_table(report))
            for skipped in report["skipped"]:
                name = Path(skipped["artifact"]).name
                console.print(f"[yellow]not run[/yellow] {name}: {skipped['reason']}")
            console.print(f"report: {build / name}"
                          + (f", picture: {build / report['grid']}" if "grid" in report else ""))
        if not report["passed"]:
            failures = report_failures(report)
            if not failures:  # nothing ran: an environment problem, not an accuracy verdict
                reasons = "; ".join(s["reason"] for s in report["skipped"])
                raise EdgesegError(f"validation failed: no artifact could be run here ({reasons})")
            raise AccuracyGateError("validation failed: " + " | ".join(failures))
