"""``edgeseg info``: parameters, MACs, output stride and output shape of a model; op list of an ONNX file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console, parse_hw, parse_sets
from edgeseg.errors import EdgesegError

__all__ = ["register"]

_HELP = """Show a model's size and cost: parameters, GMACs, output stride, output shape.

\b
--model is a zoo preset (see --list), a bundle (.pt from `edgeseg train`)
or an ONNX file (then: inputs, outputs, parameters and the operator list).

\b
GMACs are multiply-accumulates (FLOPs / 2) of convolutions and matrix
products, counted by torch.utils.flop_counter on the meta device.

\b
Examples:
  edgeseg info -m dbmsnet_r18_os16 --input 360x640
  edgeseg info -m dbmsnet_r50vd_os16 --set output_stride=8 --json
  edgeseg info -m edgeseg/assets/demo_dbmsnet.pt
  edgeseg info -m engines/demo/model.int8.onnx
"""

DEFAULT_INPUT = (512, 512)


def _model_info(
    spec: str, sets: dict[str, Any], num_classes: int | None, input_size: tuple[int, int] | None, batch: int
) -> dict[str, Any]:
    import dataclasses

    import torch

    from edgeseg.checkpoint import load_model
    from edgeseg.models import build_model
    from edgeseg.models.summary import summarize_model

    path = Path(spec)
    if path.is_file():
        if sets or num_classes is not None:
            raise EdgesegError(
                f"{spec}: --set / --num-classes apply to presets; a bundle's config is its card"
            )
        model, card = load_model(path)
        source, preset, size = "bundle", card.preset, input_size or tuple(card.input_size)
    elif spec.endswith((".pt", ".pth", ".onnx")) or "/" in spec:
        raise EdgesegError(f"{spec}: file not found")
    else:
        if "num_classes" in sets:  # --set num_classes=K is another spelling of --num-classes K
            if num_classes is not None and num_classes != sets["num_classes"]:
                raise EdgesegError(f"--num-classes {num_classes} and --set num_classes={sets['num_classes']} "
                                   "disagree; give one of them")
            sets = dict(sets)
            num_classes = sets.pop("num_classes")
        with torch.device("meta"):  # structure only: instant even for 140 M parameters
            model = build_model(spec, num_classes=num_classes, **sets)
        source, preset, size = "preset", spec, input_size or DEFAULT_INPUT
    summary = summarize_model(model, (int(size[0]), int(size[1])), batch=batch)
    config = getattr(model, "config", None)
    return {
        "model": spec,
        "source": source,
        "preset": preset,
        "config": (
            dataclasses.asdict(config)
            if dataclasses.is_dataclass(config) and not isinstance(config, type)
            else None
        ),
        "input_shape": list(summary.input_shape),
        "output_shape": list(summary.output_shape),
        "output_stride": summary.output_stride,
        "params": summary.params,
        "params_m": round(summary.params_m, 3),
        "gmacs": round(summary.gmacs, 3),
        "fp32_mb": round(summary.params * 4 / 2**20, 1),
        "modules": {
            name: {"params_m": round(m["params"] / 1e6, 3), "gmacs": round(m["macs"] / 1e9, 3)}
            for name, m in summary.modules.items()
        },
    }


def _onnx_info(path: Path) -> dict[str, Any]:
    from edgeseg.export.onnx_export import load_onnx, op_histogram

    model = load_onnx(path)

    def shape(value: Any) -> list[int | str]:
        dims = value.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]

    initializers = {i.name for i in model.graph.initializer}
    params = sum(math.prod(i.dims) for i in model.graph.initializer)
    return {
        "model": str(path),
        "source": "onnx",
        "opsets": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
        "inputs": {i.name: shape(i) for i in model.graph.input if i.name not in initializers},
        "outputs": {o.name: shape(o) for o in model.graph.output},
        "params": params,
        "params_m": round(params / 1e6, 3),
        "gmacs": None,
        "nodes": len(model.graph.node),
        "ops": op_histogram(model),
    }


def _print_model(info: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{info['model']} ({info['source']})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("input", "×".join(map(str, info["input_shape"])))
    table.add_row("output", "×".join(map(str, info["output_shape"])))
    table.add_row("output stride", str(info["output_stride"] or "-"))
    table.add_row("params", f"{info['params_m']:.2f} M")
    table.add_row("GMACs", f"{info['gmacs']:.2f}")
    table.add_row("fp32 weights", f"{info['fp32_mb']:.1f} MB")
    console.print(table)
    parts = Table(title="by module")
    for col in ("module", "params (M)", "GMACs", "share"):
        parts.add_column(col, justify="left" if col == "module" else "right")
    total = info["gmacs"] or 1.0
    for name, m in info["modules"].items():
        parts.add_row(name, f"{m['params_m']:.2f}", f"{m['gmacs']:.2f}", f"{100 * m['gmacs'] / total:.0f}%")
    console.print(parts)


def _print_onnx(info: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{info['model']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, dims in info["inputs"].items():
        table.add_row(f"input {name}", "×".join(map(str, dims)))
    for name, dims in info["outputs"].items():
        table.add_row(f"output {name}", "×".join(map(str, dims)))
    table.add_row("opsets", ", ".join(f"{d} {v}" for d, v in info["opsets"].items()))
    table.add_row("params", f"{info['params_m']:.2f} M")
    table.add_row("nodes", str(info["nodes"]))
    console.print(table)
    ops = Table(title="operators")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in info["ops"].items():
        ops.add_row(op, str(n))
    console.print(ops)


def register(app: typer.Typer) -> None:
    @app.command("info", help=_HELP, epilog=EXIT_CODES_HELP)
    def info(
        model: str = typer.Option(
            None, "--model", "-m", help="Preset name, bundle (.pt) or ONNX file.", show_default=False
        ),
        sets: list[str] = typer.Option(
            None, "--set", help="Override a preset's config field: key=value (YAML value). Repeatable."
        ),
        input_size: str = typer.Option(
            None, "--input", help="Input HxW (or one size). Default: the bundle's input size, else 512x512."
        ),
        num_classes: int = typer.Option(None, "--num-classes", help="Classes (presets only). Default: 19."),
        batch: int = typer.Option(1, "--batch", min=1, help="Batch size N of the counted input."),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object on stdout instead of tables."
        ),
        list_presets: bool = typer.Option(False, "--list", help="List the zoo's presets and exit."),
    ) -> None:
        if list_presets:
            from edgeseg.models import list_models

            names = list_models()
            typer.echo(json.dumps(names) if as_json else "\n".join(names))
            return
        if model is None:
            raise EdgesegError("give a model: --model PRESET|bundle.pt|model.onnx (see --list)")
        size = parse_hw(input_size, "--input") if input_size else None
        if model.endswith(".onnx"):
            result = _onnx_info(Path(model))
            if as_json:
                typer.echo(json.dumps(result))
            else:
                _print_onnx(result)
            return
        result = _model_info(model, parse_sets(sets), num_classes, size, batch)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            _print_model(result)
