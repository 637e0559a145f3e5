"""Stages from the source model to a simplified FP32 graph: card → export → simplify.

Every source (:mod:`edgeseg.sources`) ends in the same ``model.onnx``: PyTorch sources are exported
through :class:`edgeseg.models.adapter.SegmentationAdapter`, an FP32 ONNX source is written as its
adapted graph (no PyTorch involved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg._io import sha256_file, write_json
from edgeseg.build_folder import CARD_FILE, RAW_ONNX, SIM_ONNX
from edgeseg.checkpoint import load_card
from edgeseg.errors import EdgesegError
from edgeseg.stages.base import Outcome, Stage
from edgeseg.stages.context import BuildContext

__all__ = ["CardStage", "ExportStage", "SimplifyStage"]


def _source_inputs(ctx: BuildContext) -> dict[str, Path]:
    """The source file (bundle, program or graph) whose content keys the card and the export."""
    path = ctx.source.file if ctx.source else None
    return {"checkpoint": path} if path else {}


def _source_options(ctx: BuildContext) -> dict[str, Any]:
    """What, besides the source file, decides the card and the graph."""
    from edgeseg.sources import module_digest

    o, source = ctx.options, ctx.source
    spec = {"input_size": o.input_size, "layout": o.layout, "channels": o.channels, "mean": o.mean,
            "std": o.std, "num_classes": o.num_classes, "overrides": o.overrides,
            "output_name": o.output_name}
    # A module from Python has no file: its weights are keyed by their digest instead.
    digest = module_digest(source.module) if source is not None and source.kind == "module" else None
    # The card file's and class file's content, not only their names, decide the card.
    contents = {k: sha256_file(p) for k, p in (("card_sha256", o.card), ("classes_sha256", o.classes)) if p}
    return {"model": source.ref if source else None, **spec, "module_sha256": digest, **contents}


def _check_input_size(model: Any, size: tuple[int, int]) -> None:
    """Refuse, in the first stage, an input size the network cannot take (not after calibration).

    The network runs once on the ``meta`` device: shapes only, no memory and no arithmetic, so this
    costs milliseconds even at 1024x2048. Layers without a meta kernel make it inconclusive, and
    then the export finds out.
    """
    import copy

    import torch

    h, w = size
    try:
        meta = copy.deepcopy(model).to("meta")
    except (RuntimeError, NotImplementedError, TypeError):
        return
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, h, w, device="meta"))
    except NotImplementedError:
        return
    except (RuntimeError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"--input {h}x{w}: the model cannot take this input size ({first})") from None


class CardStage(Stage):
    """The model card (preprocessing, classes, input size) from the source, ``--card`` and the flags."""

    name = "card"
    finishes_on_stop = True
    writes = (CARD_FILE,)

    def applies(self, ctx: BuildContext) -> bool:
        return ctx.source is not None

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        return _source_inputs(ctx)

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        return _source_options(ctx)

    def run(self, ctx: BuildContext) -> Outcome:
        loaded = ctx.loaded()
        card = loaded.card
        if loaded.model is not None:
            _check_input_size(loaded.model, tuple(card.input_size))
        path = ctx.path(CARD_FILE)
        write_json(path, card.to_dict())
        ctx.card = card
        h, w = card.input_size
        what = f", {loaded.details['output']}" if "output" in loaded.details else ""
        return Outcome({"card": path}, results={"source": {"kind": loaded.kind, **loaded.details}},
                       detail=f"{card.preset}, {card.num_classes} classes, input {h}x{w}{what}")

    def reuse(self, ctx: BuildContext) -> str:
        ctx.card = load_card(ctx.path(CARD_FILE))
        return CARD_FILE


class ExportStage(Stage):
    """ONNX export (dynamo) of the model, with the card in the graph's metadata."""

    name = "export"
    finishes_on_stop = True
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
        return {"card": ctx.path(CARD_FILE), **_source_inputs(ctx)}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        return {"export": self._config(ctx).to_dict(), "plugin": ctx.options.plugin, **_source_options(ctx)}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        return [ctx.path(RAW_ONNX)]

    def run(self, ctx: BuildContext) -> Outcome:
        from edgeseg.export.onnx_export import export_onnx, finish_graph

        path = ctx.path(RAW_ONNX)
        loaded = ctx.loaded()
        if loaded.graph is not None:
            # An FP32 ONNX source: its adapted graph is the build's model.onnx and its reference.
            result = finish_graph(loaded.graph, path, self._config(ctx), metadata=ctx.card_metadata())
        else:
            table = None
            if ctx.options.plugin == "fused-ddc":
                from edgeseg.ops.onnx_plugin import custom_translation_table

                table = custom_translation_table()
            result = export_onnx(loaded.model, path, self._config(ctx), metadata=ctx.card_metadata(),
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
    finishes_on_stop = True
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
