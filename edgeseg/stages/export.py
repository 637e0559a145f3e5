"""Stages from the PyTorch model to a simplified FP32 graph: card → export → simplify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg._io import write_json
from edgeseg.build_folder import CARD_FILE, RAW_ONNX, SIM_ONNX
from edgeseg.checkpoint import load_card
from edgeseg.stages.base import Outcome, Stage
from edgeseg.stages.context import BuildContext

__all__ = ["CardStage", "ExportStage", "SimplifyStage"]


class CardStage(Stage):
    """The model card (preprocessing, classes, input size) from the checkpoint or preset."""

    name = "card"
    writes = (CARD_FILE,)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        path = ctx.source.path if ctx.source else None
        return {"checkpoint": path} if path else {}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        return {"model": ctx.source.ref if ctx.source else None, "input_size": ctx.options.input_size}

    def run(self, ctx: BuildContext) -> Outcome:
        _, card = ctx.model()
        path = ctx.path(CARD_FILE)
        write_json(path, card.to_dict())
        ctx.card = card
        h, w = card.input_size
        return Outcome({"card": path}, detail=f"{card.preset}, {card.num_classes} classes, input {h}x{w}")

    def reuse(self, ctx: BuildContext) -> str:
        ctx.card = load_card(ctx.path(CARD_FILE))
        return CARD_FILE


class ExportStage(Stage):
    """ONNX export (dynamo) of the model, with the card in the graph's metadata."""

    name = "export"
    reads = (CARD_FILE,)
    writes = (RAW_ONNX,)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None

    def _config(self, ctx: BuildContext) -> Any:
        from edgeseg.export.onnx_export import ExportConfig

        return ExportConfig(input_size=tuple(ctx.need_card().input_size),  # type: ignore[arg-type]
                            batch=ctx.options.batch, batch_profile=ctx.options.shapes,
                            opset=ctx.options.opset, output=ctx.options.output)

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        inputs = {"card": ctx.path(CARD_FILE)}
        if ctx.source is not None and ctx.source.path:
            inputs["checkpoint"] = ctx.source.path
        return inputs

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        return {"export": self._config(ctx).to_dict(), "plugin": ctx.options.plugin}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        return [ctx.path(RAW_ONNX)]

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.export.onnx_export import export_onnx

        model, _ = ctx.model()
        table = None
        if ctx.options.plugin == "fused-ddc":
            from edgeseg.ops.onnx_plugin import custom_translation_table

            table = custom_translation_table()
        path = ctx.path(RAW_ONNX)
        result = export_onnx(model, path, self._config(ctx), metadata=ctx.card_metadata(),
                             translation_table=table)
        compat = ctx.check_compat(path)
        return Outcome({"onnx": path},
                       results={"opset": result.opset, "nodes": result.num_nodes, "op_types": result.op_types,
                                "external_data": result.external_data, "trt_compat": compat},
                       detail=f"{path.name}: opset {result.opset}, {result.num_nodes} nodes")

    def reuse(self, ctx: BuildContext) -> str:
        return RAW_ONNX


class SimplifyStage(Stage):
    """onnxsim, with its output checked against the raw export, then the TensorRT-compat check."""

    name = "simplify"
    reads = (RAW_ONNX,)
    writes = (SIM_ONNX,)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return {"onnx": ctx.path(RAW_ONNX)}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        return [ctx.path(SIM_ONNX)]

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.export.simplify import simplify_onnx

        path = ctx.path(SIM_ONNX)
        profile = ctx.options.shapes
        result = simplify_onnx(ctx.path(RAW_ONNX), path, test_batch=profile[1] if profile else None)
        compat = ctx.check_compat(path)
        ctx.deploy = path
        return Outcome({"onnx": path},
                       results={"nodes_before": result.nodes_before, "nodes_after": result.nodes_after,
                                "op_types": result.op_types, "trt_compat": compat,
                                "output_check": result.output_check},
                       detail=f"{path.name}: {result.nodes_before} → {result.nodes_after} nodes, "
                              "TensorRT-compatible")

    def reuse(self, ctx: BuildContext) -> str:
        ctx.deploy = ctx.path(SIM_ONNX)
        return SIM_ONNX
