"""What the stages of one build share: options, folder, record, model card, model and image sets.

A :class:`BuildContext` is created by the executor and handed to every stage. It loads the model,
the calibration images and the validation images at most once, on first use, so a build that
resumes past a stage never pays for what that stage needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.build_folder import RAW_ONNX, BuildRecord, Precision
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.stages.image_sets import ImageSets, Splits
from edgeseg.stages.options import DEFAULT_PLUGIN_LIB, BuildOptions, ModelSource

__all__ = ["BuildContext", "Reporter", "finish_hint"]

Progress = Callable[[int, int], None]


def finish_hint(onnx_path: Path, target: str | None = None) -> str:
    """The command that finishes a build on a machine with TensorRT (with the build's ``--target``)."""
    return f"edgeseg build --from-onnx {onnx_path}" + (f" --target {target}" if target else "")


class Reporter:
    """Receives progress from a build; the CLI draws it with rich, the default is silent.

    Attributes:
        show_progress: whether stages that draw their own progress bars (validation) should.
    """

    show_progress = False

    def stage(self, name: str, status: str, detail: str = "") -> None:
        """A stage finished (``status``: done / cached / skipped / failed)."""

    def note(self, message: str) -> None:
        """A one-line message for the user."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Progress]:
        """A long step with a known number of items; yields ``progress(done, total)``."""
        yield lambda done, total: None


@dataclass
class BuildContext(ImageSets):
    """The state one build's stages read and extend.

    Attributes:
        options: the build options.
        reporter: progress sink.
        folder: the build folder.
        record: its ``build.json``.
        precision: the precision being built.
        source: the model the build starts from (None for ``--from-onnx``).
        card: the model card, once the card stage (or ``--from-onnx``) has read it.
        deploy: the graph TensorRT parses, once a precision stage has written it.
        engine: the engine stage's outcome (``status``, ``reason``/``path`` ...).
        report: the validation report, once validated.
    """

    options: BuildOptions
    reporter: Reporter
    folder: Path
    record: BuildRecord
    precision: Precision
    source: ModelSource | None = None
    card: ModelCard | None = None
    deploy: Path | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    _model: Any = None
    _calibration: Any = None
    _validation: Any = None
    _splits: Splits | None = None

    def path(self, name: str) -> Path:
        return self.folder / name

    def check_compat(self, path: Path) -> dict[str, Any]:
        """TensorRT-compatibility check of a graph a stage wrote; a rejected graph is deleted."""
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
    def loaded(self) -> Any:
        """The build's source, loaded once (:class:`edgeseg.sources.Loaded`: card, model or graph)."""
        from edgeseg.sources import load_source

        if self._model is not None:
            return self._model
        source = self.source
        if source is None:
            raise EdgesegError("this build starts from an ONNX graph (--from-onnx): there is no source model")
        o = self.options
        loaded = load_source(source, o.card_spec(), overrides=o.overrides, output_name=o.output_name,
                             batch=o.batch, shapes=o.shapes, opset=o.opset, note=self.reporter.note)
        if o.plugin == "fused-ddc":
            if not hasattr(loaded.model, "fuse"):
                raise EdgesegError(f"--plugin fused-ddc: --model {source.ref} has no DDC blocks to fuse "
                                   "(only the zoo's DBMSNet presets have)")
            loaded.model = loaded.model.fuse()
        self._model = loaded
        return loaded

    def model(self) -> tuple[Any, ModelCard]:
        """The PyTorch model (images → NCHW logits at input size) and its card (loaded once).

        Raises:
            EdgesegError: the source is an ONNX graph (its reference is :meth:`reference_onnx`).
        """
        loaded = self.loaded()
        if loaded.model is None:
            ref = self.source.ref if self.source else ""
            raise EdgesegError(f"--model {ref} is an ONNX graph: there is no PyTorch model; its FP32 "
                               f"reference is {self.path(RAW_ONNX)} on ONNX Runtime")
        return loaded.model, loaded.card

    def reference_onnx(self) -> Path | None:
        """The FP32 reference graph of a build from an ONNX source (``model.onnx``), else None."""
        return self.path(RAW_ONNX) if self.source is not None and self.source.kind == "onnx" else None

    def reference_runner(self) -> Any:
        """An inactive runner of this build's FP32 reference, for validation.

        A PyTorch source runs as the model the export traced (:meth:`model`); an ONNX source as its
        own adapted graph ``model.onnx`` on ONNX Runtime.
        """
        onnx_path = self.reference_onnx()
        if onnx_path is not None:
            from edgeseg.runners.loader import runner_for

            return runner_for(onnx_path, Precision.FP32, name=f"onnxrt:{onnx_path.name} (FP32 reference)")
        from edgeseg.runners.torch import TorchRunner

        model, _ = self.model()
        return TorchRunner(model, name=f"torch:{self.source.ref if self.source else type(model).__name__}")

    def checkpoint(self) -> Path | None:
        """The bundle validation reloads as its reference: the source's, else what build.json recorded.

        None for sources that are not bundles (presets, programs, modules, ONNX graphs): their
        reference is :meth:`reference_runner`.
        """
        if self.source is not None:
            return self.source.path
        recorded = (self.record.meta.get("options") or {}).get("checkpoint")
        return Path(recorded) if recorded and Path(recorded).is_file() else None

    def card_metadata(self) -> dict[str, str]:
        return {"edgeseg.card": json.dumps(self.need_card().to_dict())}

    def int8_agreement_gate(self) -> float:
        """The guard aims at the same pixel agreement that validation will gate the INT8 graph on."""
        from edgeseg.validate import Tolerances

        if self.options.min_agreement is not None:
            return self.options.min_agreement
        return Tolerances().pixel_agreement[Precision.INT8.value]

    def plugin_library(self) -> Path:
        """The compiled ``EdgesegFusedDDC`` TensorRT plugin library (``--plugin-lib``)."""
        path = Path(self.options.plugin_lib or DEFAULT_PLUGIN_LIB)
        if not path.is_file():
            raise EdgesegError(f"{path}: TensorRT plugin library not found; build it with `cmake -S cpp_ext "
                               "-B build/trt && cmake --build build/trt` or pass --plugin-lib")
        return path
