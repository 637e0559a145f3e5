"""`edgeseg export`: the export stages of a build only (model.onnx, model.sim.onnx, compat check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli._common import CARD_FLAGS, EXIT_CODES_HELP, card_options, console

__all__ = ["register"]

_HELP = """Export a model to ONNX in engines/<name>/: model.onnx (raw) and model.sim.onnx (simplified).

The graph: input 'images' float32 (N,3,H,W) normalised RGB; output 'logits' float32 (N,K,H,W) \
or, with --output argmax, 'labels' int32 (N,H,W). Static HxW; dynamic batch with --shapes. \
A network that takes NHWC or BGR (--layout, --channels) gets the conversion inside the graph. \
Both files pass the TensorRT-compatibility check. These are the first stages of \
`edgeseg build` (card → export → simplify), recorded in the same build.json and card.json, so a \
later build with the same model and card options reuses them.

\b
Examples:
  # the shipped demo model
  edgeseg export
  edgeseg export -m runs/city/model.pt --input 512x1024 --shapes 1,2,4
  # a preset with random weights, argmax output
  edgeseg export -m dbmsnet_r50vd_os16 --output argmax
  # an NHWC, BGR network fed values in [0, 1]
  edgeseg export -m model.onnx --layout nhwc --channels bgr \\
      --mean 0,0,0 --std 255,255,255
  # the card keys from a file
  edgeseg export -m net.pt2 --card card.yaml
  # input, batch and opset from a target profile
  edgeseg export --target jetson-orin-nano
"""


def register(app: typer.Typer) -> None:
    @app.command("export", help=_HELP, epilog=EXIT_CODES_HELP)
    @card_options
    def export(
        model: str = typer.Option(
            None, "--model", "-m", help="Zoo preset, edgeseg bundle (.pt), torch.export program (.pt2) or "
                                        "FP32 ONNX graph (.onnx). (default: the demo model)"),
        name: str = typer.Option(None, "--name", help="Build folder name. (default: model stem)"),
        out_dir: Path = typer.Option(Path("engines"), "--out-dir", help="Parent folder of builds."),
        card_flags: dict[str, Any] = CARD_FLAGS,  # --input, --card, --layout ... --output-name
        batch: int = typer.Option(None, "--batch", help="Static batch size. (default: the target's, else 1)"),
        shapes: str = typer.Option(None, "--shapes", help="Dynamic batch 'min,opt,max' (e.g. 1,4,8). "
                                   "(default: the target's, else static)"),
        opset: int = typer.Option(
            None, "--opset", help="ONNX opset 17..20. (default: the target's, else 18)"),
        output: str = typer.Option("logits", "--output", help="Graph output: logits or argmax (int32)."),
        plugin: str = typer.Option(None, "--plugin", help="fused-ddc: DDC blocks as the TensorRT plugin."),
        target: str = typer.Option(
            None, "--target", "-t", help="Target profile (see `edgeseg build --list-targets`) or a "
            ".toml path: its input size, batch and opset are the defaults."),
        json_out: bool = typer.Option(False, "--json", help="Print the export records as JSON on stdout."),
    ) -> None:
        import json

        from rich.table import Table

        from edgeseg._io import read_json
        from edgeseg.export import parse_batch_profile
        from edgeseg.stages import Build, BuildOptions

        options = BuildOptions(
            model=model, name=name, out_dir=out_dir, batch=batch, **card_flags,
            shapes=parse_batch_profile(shapes), opset=opset, output=output, plugin=plugin, target=target,
        )
        result = Build(options).run(until="simplify")
        stages = read_json(result.folder / "build.json")["stages"]
        export, simplify = stages["export"]["results"], stages["simplify"]["results"]
        table = Table(title=f"edgeseg export → {result.folder}", show_header=False)
        table.add_row("model.onnx", f"opset {export['opset']}, {export['nodes']} nodes")
        table.add_row("model.sim.onnx", f"{simplify['nodes_before']} → {simplify['nodes_after']} nodes")
        table.add_row("ops", ", ".join(f"{k} {v}" for k, v in simplify["op_types"].items()))
        table.add_row("TensorRT", f"compatible ({simplify['trt_compat']['table']})")
        console.print(table)
        if json_out:
            print(json.dumps({"folder": str(result.folder), "export": stages["export"],
                              "simplify": stages["simplify"]}, indent=2))
