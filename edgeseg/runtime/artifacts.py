"""What a build directory (``engines/<name>/``) holds, found by the contract's file names.

The runtime, the benchmark and the serving exports all start from here, so they agree on which
ONNX graph or engine is "the int8 model" of a build::

    card.json                   ModelCard (preprocessing, classes, palette)
    model.onnx                  raw export            (precision fp32)
    model.sim.onnx              simplified export     (precision fp32, preferred over raw)
    model.fp16.onnx             FP16 graph
    model.int8.onnx             INT8 Q/DQ graph
    model.<precision>.engine    TensorRT engine, + model.<precision>.engine.json (its metadata)
    build.json                  stages done, options (e.g. the precision asked for)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._io import read_json
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError

__all__ = ["PRECISIONS", "BuildArtifacts", "OnnxTensor", "onnx_io"]

#: Deployment precisions, from most to least accurate.
PRECISIONS = ("fp32", "fp16", "int8")

# ONNX variants per precision, best first: the simplified graph is the one later stages consume.
_ONNX_FILES = {
    "fp32": ("model.sim.onnx", "model.onnx"),
    "fp16": ("model.fp16.onnx",),
    "int8": ("model.int8.onnx",),
}


@dataclass
class BuildArtifacts:
    """The artifacts present in one build directory.

    Attributes:
        root: the directory.
        card: its model card.
        onnx: every ONNX file present, by file name (``"model.sim.onnx"`` → path).
        engines: TensorRT engines present, by precision.
        build: the parsed ``build.json`` (empty when the build has not written one yet).
    """

    root: Path
    card: ModelCard
    onnx: dict[str, Path] = field(default_factory=dict)
    engines: dict[str, Path] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> BuildArtifacts:
        """Scan a build directory.

        Raises:
            EdgesegError: not a directory, or no ``card.json`` (not a build directory).
        """
        root = Path(path)
        if not root.is_dir():
            raise EdgesegError(f"{root}: build directory not found")
        card_path = root / "card.json"
        if not card_path.is_file():
            raise EdgesegError(f"{root}: not a build directory (no card.json); run 'edgeseg build' first")
        card = ModelCard.from_dict(read_json(card_path))
        build = read_json(root / "build.json") if (root / "build.json").is_file() else {}
        onnx = {p.name: p for p in sorted(root.glob("model*.onnx"))}
        engines = {}
        for precision in PRECISIONS:
            engine = root / f"model.{precision}.engine"
            if engine.is_file():
                engines[precision] = engine
        return cls(root=root, card=card, onnx=onnx, engines=engines, build=build)

    def onnx_for(self, precision: str) -> Path | None:
        """The ONNX graph that implements ``precision`` (None when the build has not made it)."""
        for name in _ONNX_FILES[_check_precision(precision)]:
            if name in self.onnx:
                return self.onnx[name]
        return None

    def precisions(self) -> list[str]:
        """Precisions with an ONNX graph or an engine, most accurate first."""
        return [p for p in PRECISIONS if p in self.engines or self.onnx_for(p) is not None]

    def default_precision(self) -> str:
        """The precision the build was asked for (``build.json``), else the lowest one present.

        Raises:
            EdgesegError: the directory holds neither an ONNX graph nor an engine.
        """
        available = self.precisions()
        if not available:
            raise EdgesegError(f"{self.root}: no model*.onnx or model.*.engine; the build has not run yet")
        wanted = (self.build.get("options") or {}).get("precision")
        return wanted if wanted in available else available[-1]

    def engine_metadata(self, precision: str) -> dict[str, Any] | None:
        """The ``.engine.json`` written beside the engine by the TensorRT build, if present."""
        engine = self.engines.get(_check_precision(precision))
        meta = engine.with_name(engine.name + ".json") if engine else None
        return read_json(meta) if meta is not None and meta.is_file() else None

    def checkpoint(self) -> Path | None:
        """The PyTorch bundle the build started from, when ``build.json`` records one that exists."""
        options = self.build.get("options") or {}
        for key in ("checkpoint", "model"):
            value = options.get(key)
            if isinstance(value, str) and value.endswith(".pt"):
                path = Path(value)
                for candidate in (path, self.root / path):
                    if candidate.is_file():
                        return candidate
        return None


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise EdgesegError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class OnnxTensor:
    """One graph input/output: name, ONNX element type name (``FLOAT``, ``INT32``...), dims.

    A dim is an int, or a string for a symbolic (dynamic) dimension.
    """

    name: str
    elem_type: str
    dims: tuple[int | str, ...]


def onnx_io(path: str | os.PathLike[str]) -> tuple[list[OnnxTensor], list[OnnxTensor]]:
    """Inputs and outputs of an ONNX file, read without loading external weight data.

    Raises:
        EdgesegError: the file is missing or not an ONNX model.
    """
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: ONNX file not found") from None
    except Exception as e:  # protobuf DecodeError and friends
        raise EdgesegError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}

    def describe(values: Any) -> list[OnnxTensor]:
        out = []
        for v in values:
            if v.name in initializers:
                continue  # old exporters list weights as inputs too
            t = v.type.tensor_type
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
            )
            out.append(OnnxTensor(v.name, onnx.TensorProto.DataType.Name(t.elem_type), dims))
        return out

    return describe(model.graph.input), describe(model.graph.output)
