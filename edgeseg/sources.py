"""Where a build's model comes from: any source becomes a reference model (or graph) and a model card.

==========================  ========================  ===============================================
``--model`` / ``build()``   loader                    reference
==========================  ========================  ===============================================
zoo preset name             :class:`ModelFromPreset`   the zoo network, seeded random weights
``*.pt`` edgeseg bundle     :class:`ModelFromBundle`   the zoo network with the bundle's weights
``*.pt2`` (torch.export)    :class:`ModelFromProgram`  the program, no user code imported
an ``nn.Module`` (Python)   :class:`ModelFromModule`   the module
``*.onnx`` (FP32)           :class:`GraphFromOnnx`     the graph itself, on ONNX Runtime
==========================  ========================  ===============================================

Whatever the source, what comes out speaks edgeseg's contract (:mod:`edgeseg.export.onnx_export`):
input ``images`` ``(N, 3, H, W)`` normalised RGB, output ``logits`` ``(N, K, H, W)`` at the input
size. PyTorch networks are wrapped in :class:`edgeseg.models.adapter.SegmentationAdapter`; an ONNX
graph gets the same conversions as nodes around it (:func:`adapt_graph`). So the card the build
saves describes that contract (``layout`` nchw, ``channels`` rgb) and the source's own layout and
channel order live only inside the graph.

The card comes from the source (a bundle's own card, a preset's class count), then from
``--card card.yaml``, then from flags; what a graph fixes (static input size, layout, class count)
is read from it, and a value that contradicts it is refused.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeseg.assets import DEMO_MODEL
from edgeseg.checkpoint import CHANNEL_ORDERS, LAYOUTS, RGB_INDEX, ModelCard
from edgeseg.errors import EdgesegError

__all__ = [
    "CardSpec",
    "Loaded",
    "ModelFromPreset",
    "ModelFromBundle",
    "ModelFromProgram",
    "ModelFromModule",
    "GraphFromOnnx",
    "ModelSource",
    "adapt_graph",
    "check_graph_against_card",
    "load_source",
    "module_digest",
    "resolve_model",
]

# The keys of --card card.yaml, each the name of its flag without the dashes.
_CARD_KEYS = {"input": "input_size", "layout": "layout", "channels": "channels", "mean": "mean", "std": "std",
              "num_classes": "num_classes", "classes": "class_names"}
_FLAGS = {"input_size": "--input", "layout": "--layout", "channels": "--channels", "mean": "--mean",
          "std": "--std", "num_classes": "--num-classes", "class_names": "--classes"}


@dataclass
class ModelSource:
    """The model a build starts from.

    Args:
        kind: ``"checkpoint"`` (edgeseg bundle), ``"preset"``, ``"program"`` (``.pt2``), ``"onnx"``
            (FP32 graph) or ``"module"`` (an ``nn.Module`` from Python).
        ref: the file, the preset name, or the module's class name.
        name: default build name.
        is_demo: True for the shipped demo model.
        module: the ``nn.Module`` of a ``"module"`` source.
    """

    kind: str
    ref: str
    name: str
    is_demo: bool = False
    module: Any = None

    @property
    def path(self) -> Path | None:
        """The edgeseg bundle (the PyTorch reference validation reloads), for checkpoint sources only."""
        return Path(self.ref) if self.kind == "checkpoint" else None

    @property
    def file(self) -> Path | None:
        """The source file of any file kind (bundle, program, ONNX): its content keys the build records."""
        return Path(self.ref) if self.kind in ("checkpoint", "program", "onnx") else None


#: File suffix → source kind; any other existing file is read as an edgeseg bundle.
_KINDS = {".pt2": "program", ".onnx": "onnx"}


def resolve_model(model: Any) -> ModelSource:
    """Turn ``--model`` / ``build(model)`` into a :class:`ModelSource`.

    Args:
        model: a file (``.pt`` bundle, ``.pt2`` program, ``.onnx`` graph), a zoo preset name, an
            ``nn.Module``, or None for the shipped demo model.

    Raises:
        EdgesegError: the file does not exist and the name is not a preset, or the demo model is
            missing from this installation.
    """
    if model is None:
        if not DEMO_MODEL.is_file():
            raise EdgesegError(f"{DEMO_MODEL}: the shipped demo model is missing; pass --model CHECKPOINT "
                               "(a bundle from `edgeseg train`) or a zoo preset name")
        return ModelSource("checkpoint", os.fspath(DEMO_MODEL), DEMO_MODEL.stem, is_demo=True)
    if not isinstance(model, (str, os.PathLike)):
        if not callable(getattr(model, "state_dict", None)):
            raise EdgesegError(f"model: expected a path, a preset name or a torch.nn.Module, got "
                               f"{type(model).__name__}")
        name = type(model).__name__
        return ModelSource("module", name, name.lower(), module=model)
    path = Path(model)
    if path.is_file():
        return ModelSource(_KINDS.get(path.suffix, "checkpoint"), os.fspath(path), path.stem,
                           is_demo=path.resolve() == DEMO_MODEL.resolve())
    from edgeseg.models import list_models

    if model in list_models():
        return ModelSource("preset", os.fspath(model), os.fspath(model))
    raise EdgesegError(f"--model {model}: checkpoint not found (no .pt bundle, .pt2 program or .onnx graph "
                       f"of that name), and not a zoo preset (presets: {', '.join(list_models())})")


@dataclass
class CardSpec:
    """The model card as the user states it (flags or ``--card card.yaml``); None means not stated.

    Args:
        input_size: ``(H, W)``.
        layout: the network's input layout, ``nchw`` or ``nhwc``.
        channels: the network's channel order, ``rgb`` or ``bgr``.
        mean: per-channel mean in 0..255 pixel units (pixel = (value - mean) / std).
        std: per-channel std in 0..255 pixel units, each > 0. A network fed [0, 1] takes mean 0,0,0
            and std 255,255,255.
        num_classes: class count.
        class_names: one name per class.
        where: field → how errors name it (``--input``, or ``card.yaml key 'input'``).
    """

    input_size: tuple[int, int] | None = None
    layout: str | None = None
    channels: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    where: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, flag in _FLAGS.items():
            self.where.setdefault(key, flag)
        self._check()

    def _check(self) -> None:
        def bad(key: str, expected: str) -> EdgesegError:
            return EdgesegError(f"{self.where[key]} must be {expected}, got {getattr(self, key)!r}")

        if self.layout is not None and self.layout not in LAYOUTS:
            raise bad("layout", " or ".join(LAYOUTS))
        if self.channels is not None and self.channels not in CHANNEL_ORDERS:
            raise bad("channels", " or ".join(CHANNEL_ORDERS))
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is None:
                continue
            try:
                values = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                values = ()
            if len(values) != 3 or (key == "std" and min(values) <= 0):
                raise bad(key, "3 numbers in 0..255 pixel units" + (", each > 0" if key == "std" else ""))
            setattr(self, key, values)
        n = self.num_classes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise bad("num_classes", "an integer >= 1")
        if self.input_size is not None:
            hw = tuple(self.input_size) if isinstance(self.input_size, (list, tuple)) else ()
            if len(hw) != 2 or not all(isinstance(v, int) and v >= 1 for v in hw):
                raise bad("input_size", "two integers >= 1 (H, W)")
            self.input_size = hw  # type: ignore[assignment]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CardSpec:
        """Read ``--card card.yaml``: the keys ``input`` (``[H, W]``), ``layout``, ``channels``, ``mean`` and
        ``std`` (lists of 3, 0..255 units), ``num_classes`` and ``classes`` (a list of names, or a
        file of one name a line, relative to the card file).

        Raises:
            EdgesegError: unreadable YAML, unknown keys or bad values (naming the file and key).
        """
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except OSError as e:
            raise EdgesegError(f"--card {p}: cannot read it ({e.strerror or e})") from None
        except yaml.YAMLError as e:
            raise EdgesegError(f"--card {p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise EdgesegError(f"--card {p}: expected a mapping of card keys ({', '.join(_CARD_KEYS)})")
        unknown = sorted(set(data) - set(_CARD_KEYS))
        if unknown:
            raise EdgesegError(f"--card {p}: unknown key(s) {unknown} (keys: {', '.join(_CARD_KEYS)})")
        values: dict[str, Any] = {}
        where = {_CARD_KEYS[k]: f"--card {p} key '{k}'" for k in data}
        for key, value in data.items():
            name = _CARD_KEYS[key]
            if name == "class_names" and isinstance(value, str):
                value = read_class_names(p.parent / value)
            names_ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if name == "class_names" and not names_ok:
                raise EdgesegError(f"{where[name]} must be a list of names or a file of names, got {value!r}")
            values[name] = value
        return cls(**values, where=where)

    def over(self, base: CardSpec) -> CardSpec:
        """This spec's stated values over ``base``'s (flags over the card file)."""
        stated = {k: getattr(self, k) for k in _FLAGS if getattr(self, k) is not None}
        where = {**base.where, **{k: self.where[k] for k in stated}}
        return replace(base, **stated, where=where)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """``--classes FILE``: one class name a line (blank lines skipped)."""
    p = Path(path)
    try:
        names = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise EdgesegError(f"--classes {p}: cannot read it ({e.strerror or e})") from None
    if not names:
        raise EdgesegError(f"--classes {p}: no class names in it (one a line)")
    return names


@dataclass
class Loaded:
    """A source, ready for the build.

    Args:
        kind: the :class:`~edgeseg.stages.options.ModelSource` kind.
        card: the card of the graph the build writes (NCHW RGB input).
        model: the PyTorch reference (mapping images to logits), or None for an ONNX source.
        graph: the adapted FP32 ``onnx.ModelProto`` for an ONNX source, else None.
        details: what was read from the source (output kind, source layout ...), for build.json.
        notes: lines for the user (random weights, what was assumed).
    """

    kind: str
    card: ModelCard
    model: Any = None
    graph: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _fixed_conflict(spec: CardSpec, key: str, fixed: Any, label: str) -> None:
    stated = getattr(spec, key)
    if stated is not None and stated != fixed:
        shown = "x".join(map(str, fixed)) if key == "input_size" else fixed
        raise EdgesegError(f"{spec.where[key]} {_show(stated)}: {label} fixes it at {shown}")


def _show(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) and len(value) == 2 else str(value)


def _card_from_spec(base: ModelCard, spec: CardSpec, label: str) -> ModelCard:
    """``base`` with the stated values applied (mean/std converted from 0..255 to the card's 0..1)."""
    d = base.to_dict()
    if spec.input_size is not None:
        d["input_size"] = list(spec.input_size)
    if spec.mean is not None:
        d["mean"] = [v / 255.0 for v in spec.mean]
    if spec.std is not None:
        d["std"] = [v / 255.0 for v in spec.std]
    if spec.num_classes is not None:
        d["num_classes"] = spec.num_classes
    if spec.class_names is not None:
        d["class_names"] = list(spec.class_names)
        d["palette"] = d["palette"] if len(d["palette"]) == len(spec.class_names) else []
    return ModelCard.from_dict(d, source=label)


class _Loader(ABC):
    """Base of the source loaders: ``__init__`` stores arguments, ``call_impl`` loads (Polygraphy style)."""

    def __call__(self) -> Loaded:
        return self.call_impl()

    @abstractmethod
    def call_impl(self) -> Loaded:
        """Load the source."""


class ModelFromPreset(_Loader):
    """A zoo preset with seeded random weights: to deploy and time an architecture, not to judge it.

    Args:
        name: registry name.
        spec: the user's card values.
        overrides: config fields (``--set``). Defaults to none.
    """

    def __init__(self, name: str, spec: CardSpec, overrides: dict[str, Any] | None = None) -> None:
        self.name, self.spec, self.overrides = name, spec, dict(overrides or {})

    def call_impl(self) -> Loaded:
        import torch

        from edgeseg.models import build_model

        _zoo_contract(self.spec, f"preset {self.name}")
        torch.manual_seed(0)
        kwargs = dict(self.overrides)
        if self.spec.num_classes is not None:
            kwargs["num_classes"] = self.spec.num_classes
        model = build_model(self.name, **kwargs).eval()
        config: Any = model.config
        overrides = {k: v for k, v in self.overrides.items() if k != "num_classes"}
        card = _card_from_spec(ModelCard(preset=self.name, num_classes=int(config.num_classes),
                                         overrides=overrides), self.spec, f"--model {self.name}")
        note = (f"--model {self.name} is a preset: building it with random weights "
                "(for benchmarking; its accuracy means nothing)")
        return Loaded("preset", card, model=model, notes=[note])


class ModelFromBundle(_Loader):
    """An edgeseg bundle (``edgeseg train``'s ``.pt``): its own card, the stated values over it.

    Args:
        path: the bundle.
        spec: the user's card values; a class count other than the weights' is refused.
    """

    def __init__(self, path: str | os.PathLike[str], spec: CardSpec) -> None:
        self.path, self.spec = Path(path), spec

    def call_impl(self) -> Loaded:
        from edgeseg.checkpoint import load_model

        model, card = load_model(self.path)
        _zoo_contract(self.spec, str(self.path))
        _fixed_conflict(self.spec, "num_classes", card.num_classes, f"{self.path} (its weights)")
        return Loaded("checkpoint", _card_from_spec(card, self.spec, f"{self.path} (its card)"), model=model)


def _zoo_contract(spec: CardSpec, label: str) -> None:
    # Zoo networks take NCHW RGB by construction; a flag saying otherwise describes another model.
    _fixed_conflict(spec, "layout", "nchw", f"{label} (a zoo network)")
    _fixed_conflict(spec, "channels", "rgb", f"{label} (a zoo network)")


class ModelFromProgram(_Loader):
    """A ``torch.export`` program (``.pt2`` from ``torch.export.save``), loaded without the user's code.

    The program's input shape fixes the input size and layout where static; its output fixes the
    class count.

    Args:
        path: the ``.pt2`` file.
        spec: the user's card values.
        output_name: ``--output-name``. Defaults to the automatic choice.
        batch: the build's example batch size; a program with another static batch is refused.
    """

    def __init__(self, path: str | os.PathLike[str], spec: CardSpec, *, output_name: str | None = None,
                 batch: int = 1) -> None:
        self.path, self.spec, self.output_name, self.batch = Path(path), spec, output_name, batch

    def call_impl(self) -> Loaded:
        import torch

        label = str(self.path)
        try:
            program = torch.export.load(self.path)
        except Exception as e:  # a damaged or foreign file can make the deserializer raise anything
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{label}: not a torch.export program written by torch.export.save "
                               f"({first})") from None
        names = list(program.graph_signature.user_inputs)
        if len(names) != 1:
            raise EdgesegError(f"{label}: the program takes {len(names)} inputs; a segmenter takes one "
                               "image batch")
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0])
        shape = [d if isinstance(d, int) else None for d in node.meta["val"].shape]
        if len(shape) != 4:
            raise EdgesegError(f"{label}: the program's input has shape {tuple(shape)}; expected 4-D images")
        if shape[0] is not None and shape[0] != self.batch:
            raise EdgesegError(f"--batch {self.batch}: {label} fixes the batch at {shape[0]} "
                               "(export it with a dynamic batch, or build with that batch)")
        spec = _input_from_shape(self.spec, shape, label)
        outputs = len(program.graph_signature.user_outputs)
        graph_offset = len(next(n for n in program.graph.nodes if n.op == "output").args[0]) - outputs
        return _adapt_torch("program", program.module(), spec, label, self.output_name, graph=program.graph,
                            graph_offset=graph_offset, fixed_mode=True, static_batch=shape[0])


class ModelFromModule(_Loader):
    """Any ``torch.nn.Module`` given from Python; ``input_size`` (``--input``) must be stated.

    Args:
        module: the network (set to eval mode).
        spec: the user's card values.
        output_name: which output, for dict and tuple outputs. Defaults to the automatic choice.
    """

    def __init__(self, module: Any, spec: CardSpec, *, output_name: str | None = None) -> None:
        self.module, self.spec, self.output_name = module, spec, output_name

    def call_impl(self) -> Loaded:
        label = f"model {type(self.module).__name__}"
        if self.spec.input_size is None:
            raise EdgesegError(f"{label}: an nn.Module does not fix its input size: pass input_size=(H, W) "
                               "(--input HxW)")
        return _adapt_torch("module", self.module.eval(), self.spec, label, self.output_name)


def _input_from_shape(spec: CardSpec, shape: list[int | None], label: str) -> CardSpec:
    """The input size and layout a graph's 4-D input shape fixes, checked against the stated ones."""
    layouts = [layout for layout, axis in (("nchw", 1), ("nhwc", 3)) if shape[axis] in (3, None)]
    fixed_layouts = [layout for layout, axis in (("nchw", 1), ("nhwc", 3)) if shape[axis] == 3]
    if not layouts:
        raise EdgesegError(f"{label}: input shape {tuple(shape)} has no axis of 3 channels (RGB/BGR images)")
    if len(fixed_layouts) == 1:
        _fixed_conflict(spec, "layout", fixed_layouts[0], f"{label} (input shape {tuple(shape)})")
        layout = fixed_layouts[0]
    else:
        layout = spec.layout or "nchw"
    hw = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if hw[0] is not None and hw[1] is not None:
        _fixed_conflict(spec, "input_size", hw, f"{label} (static input shape)")
        size: tuple[int, int] | None = (int(hw[0]), int(hw[1]))
    else:
        size = spec.input_size
    if size is None:
        raise EdgesegError(f"{label}: its input size is not static; pass --input HxW")
    return replace(spec, input_size=size, layout=layout)


def _adapt_torch(kind: str, module: Any, spec: CardSpec, label: str, output_name: str | None, *,
                 graph: Any = None, graph_offset: int = 0, fixed_mode: bool = False,
                 static_batch: int | None = None) -> Loaded:
    """Inspect one eager forward, then wrap ``module`` in the :class:`SegmentationAdapter`.

    Logits vs probabilities is read from ``graph`` (a program's own, its outputs flattened after
    ``graph_offset`` others); without one, from a ``torch.export`` trace of the module behind an
    adapter that only picks the output, so outputs torch.export cannot flatten (a Hugging Face
    ``ModelOutput`` without its pytree registration) still trace.
    """
    import torch
    from torch.utils._pytree import tree_flatten

    from edgeseg.models.adapter import OutputSpec, SegmentationAdapter, output_activation, select_output

    assert spec.input_size is not None  # the loaders resolve it first
    h, w = spec.input_size
    layout = spec.layout or "nchw"
    n = static_batch or 1
    example = torch.zeros(n, 3, h, w) if layout == "nchw" else torch.zeros(n, h, w, 3)
    with torch.no_grad():
        out = module(example)
    key: str | int | None = output_name
    if output_name is not None and isinstance(out, (tuple, list)) and output_name.isdigit():
        key = int(output_name)
    chosen = select_output(out, key, what=f"output of {label}")
    out_layout, channels = _read_output(tuple(chosen.shape), spec, f"{label} output")
    if graph is None:
        picked = SegmentationAdapter(module, input_size=(h, w), layout=layout,
                                     output=OutputSpec(key=key, layout=out_layout))
        try:
            graph = torch.export.export(picked, (torch.zeros(n, 3, h, w),), strict=False).graph
        except Exception as e:  # the exporter raises many types; all mean "cannot trace this forward"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{label}: torch.export cannot trace its forward ({first})") from None
        activation = output_activation(graph, 0)
    else:
        leaves, _ = tree_flatten(out)
        index = next((i for i, leaf in enumerate(leaves) if leaf is chosen), None)
        activation = output_activation(graph, graph_offset + index) if index is not None else "none"
    output = OutputSpec(key=key, layout=out_layout, activation=activation, binary=channels == 1)
    classes = 2 if channels == 1 else channels
    model = SegmentationAdapter(module, input_size=(h, w), layout=layout, channels=spec.channels or "rgb",
                                output=output, fixed_mode=fixed_mode, static_batch=static_batch).eval()
    card = _card_from_spec(ModelCard(preset=f"{kind}:{_stem(label)}", num_classes=classes),
                           replace(spec, layout=None, channels=None), label)
    details = {"input_layout": layout, "channels": spec.channels or "rgb", "output": output.describe(),
               "output_shape": list(chosen.shape)}
    return Loaded(kind, card, model=model, details=details)


def _read_output(shape: tuple[int, ...], spec: CardSpec, what: str) -> tuple[str, int]:
    """The output's layout and channel count; a stated class count it cannot have is refused as such."""
    from edgeseg.models.adapter import output_layout

    assert spec.input_size is not None  # the loaders resolve it first
    layout = spec.layout or "nchw"
    try:
        return output_layout(shape, spec.input_size, spec.num_classes, layout, what)
    except EdgesegError:
        if spec.num_classes is None:
            raise
        # Without the stated count the shape reads: then the count is what is wrong.
        found, channels = output_layout(shape, spec.input_size, None, layout, what)
        _fixed_conflict(spec, "num_classes", 2 if channels == 1 else channels,
                        f"{what} ({found.upper()}, {channels} channel(s))")
        raise


def _stem(label: str) -> str:
    return Path(label.split(" ")[-1]).name.split(".")[0]


class GraphFromOnnx(_Loader):
    """An FP32 ONNX graph, adapted to edgeseg's contract; it is its own reference on ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        spec: the user's card values.
        output_name: which graph output. Defaults to the only one, else ``logits``/``out``.
        batch: static batch of the adapted graph (when ``shapes`` is None). Defaults to 1.
        shapes: ``(min, opt, max)`` for a dynamic batch. Defaults to a static batch.
        opset: the opset the graph is converted to first. Defaults to 18.
    """

    def __init__(self, path: str | os.PathLike[str], spec: CardSpec, *, output_name: str | None = None,
                 batch: int = 1, shapes: tuple[int, int, int] | None = None, opset: int = 18) -> None:
        self.path, self.spec, self.output_name = Path(path), spec, output_name
        self.batch, self.shapes, self.opset = batch, shapes, opset

    def call_impl(self) -> Loaded:
        import onnx

        from edgeseg.build_folder import Precision, graph_precision
        from edgeseg.export.onnx_export import ensure_opset, load_onnx

        label = str(self.path)
        proto = load_onnx(self.path)
        precision = graph_precision(proto)
        if precision is not Precision.FP32:
            raise EdgesegError(f"--model {label}: the graph holds {precision} (read from its nodes); --model "
                               "takes an FP32 graph (an already-converted one goes to --from-onnx)")
        initializers = {t.name for t in proto.graph.initializer}
        inputs = [i for i in proto.graph.input if i.name not in initializers]
        if len(inputs) != 1:
            raise EdgesegError(f"{label}: the graph takes {len(inputs)} inputs; a segmenter takes one "
                               "image batch")
        shape = _dims(inputs[0])
        if len(shape) != 4 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise EdgesegError(f"{label}: input '{inputs[0].name}' is not a float32 4-D image batch")
        batch = None if self.shapes else self.batch
        if shape[0] is not None and (self.shapes or shape[0] != self.batch):
            raise EdgesegError(f"--batch/--shapes: {label} fixes the batch at {shape[0]}")
        spec = _input_from_shape(self.spec, shape, label)
        proto = ensure_opset(proto, self.opset)
        out_name, out_shape = self._output(proto, spec, label)
        output = _onnx_output_spec(proto, out_name, out_shape, spec, self.output_name, label)
        classes = 2 if output.binary else int(out_shape[1 if output.layout == "nchw" else 3])
        assert spec.input_size is not None and spec.layout is not None  # _input_from_shape resolves them
        graph = adapt_graph(proto, input_name=inputs[0].name, input_size=spec.input_size, layout=spec.layout,
                            channels=spec.channels or "rgb", output=output, output_name=out_name,
                            num_classes=classes, batch=batch)
        card = _card_from_spec(ModelCard(preset=f"onnx:{_stem(label)}", num_classes=classes),
                               replace(spec, layout=None, channels=None), label)
        details = {"input_layout": spec.layout, "channels": spec.channels or "rgb",
                   "output": output.describe(), "output_shape": list(out_shape)}
        return Loaded("onnx", card, graph=graph, details=details)

    def _output(self, proto: Any, spec: CardSpec, label: str) -> tuple[str, tuple[int, ...]]:
        """The chosen output's name and its shape on one zero image (ONNX Runtime)."""
        import numpy as np
        import onnxruntime as ort

        names = [o.name for o in proto.graph.output]
        if self.output_name is not None:
            if self.output_name not in names:
                raise EdgesegError(f"--output-name {self.output_name}: {label} has outputs {names}")
            name = self.output_name
        elif len(names) == 1:
            name = names[0]
        else:
            found = [n for n in ("logits", "out", "output") if n in names]
            if not found:
                raise EdgesegError(f"{label} has outputs {names}: choose one with --output-name")
            name = found[0]
        assert spec.input_size is not None
        h, w = spec.input_size
        shape = (1, 3, h, w) if spec.layout == "nchw" else (1, h, w, 3)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(proto.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            (value,) = session.run([name], {session.get_inputs()[0].name: np.zeros(shape, np.float32)})
        except Exception as e:  # ORT raises its own exception types for every load or run failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgesegError(f"{label}: ONNX Runtime cannot run it on a {_show((h, w))} image "
                               f"({first})") from None
        return name, tuple(int(d) for d in value.shape)


def _dims(value_info: Any) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim
    return [int(d.dim_value) if d.HasField("dim_value") else None for d in dims]


# ONNX ops that move, resize or relabel a tensor: looked through when finding the output's last op.
_PASS_THROUGH_ONNX = {"Transpose", "Reshape", "Resize", "Upsample", "Identity", "Squeeze", "Unsqueeze",
                      "Cast", "Flatten"}


def _onnx_output_spec(proto: Any, name: str, shape: tuple[int, ...], spec: CardSpec, output_name: str | None,
                      label: str) -> Any:
    from edgeseg.models.adapter import OutputSpec

    layout, channels = _read_output(shape, spec, f"{label} output '{name}'")
    producer = {o: n for n in proto.graph.node for o in n.output}
    node, activation = producer.get(name), "none"
    while node is not None:
        if node.op_type in ("Sigmoid", "Softmax"):
            activation = node.op_type.lower()
            break
        if node.op_type not in _PASS_THROUGH_ONNX:
            break
        node = producer.get(node.input[0])
    return OutputSpec(key=output_name, layout=layout, activation=activation, binary=channels == 1)


def adapt_graph(proto: Any, *, input_name: str, input_size: tuple[int, int], layout: str, channels: str,
                output: Any, output_name: str, num_classes: int, batch: int | None) -> Any:
    """The graph with :class:`SegmentationAdapter`'s conversions added as nodes around it.

    The new input ``images`` ``(N, 3, H, W)`` RGB is reordered and transposed into the original
    input; the chosen output is transposed to NCHW, turned from probabilities into logits, resized
    bilinearly (half-pixel, as ``F.interpolate(align_corners=False)``) to the input size, and a
    binary map becomes two-class logits ``(-x/2, x/2)``, as the output ``logits``. Other outputs are
    dropped (their nodes are then dead, and the simplifier removes them).

    Args:
        proto: the FP32 graph (opset >= 13).
        input_name: its image input.
        input_size: ``(H, W)``.
        layout: its input layout.
        channels: its channel order.
        output: an :class:`edgeseg.models.adapter.OutputSpec`.
        output_name: the graph output it describes.
        num_classes: class count of the adapted output.
        batch: static batch size, or None for a dynamic ``batch`` dimension.

    Returns:
        A new ``onnx.ModelProto``.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    nodes: list[Any] = []
    consts: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        consts.append(numpy_helper.from_array(array, f"edgeseg.adapter/const/{name}"))
        return consts[-1].name

    def add(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = f"edgeseg.adapter/{name}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # Input side: a fresh `images` input feeds what the original input fed.
    source = "images"
    if channels == "bgr":
        source = add("Gather", [source, const("bgr", list(RGB_INDEX["bgr"]), np.int64)], "bgr", axis=1)
    if layout == "nhwc":
        source = add("Transpose", [source], "to_nhwc", perm=[0, 2, 3, 1])
    inner = "edgeseg.adapter/input"
    nodes.append(helper.make_node("Identity", [source], [inner], name=inner))
    for node in g.node:
        node.input[:] = [inner if i == input_name else i for i in node.input]
    before, nodes = nodes, []  # ONNX wants nodes in topological order: these go first

    # Output side.
    y = output_name
    if output.layout == "nhwc":
        y = add("Transpose", [y], "to_nchw", perm=[0, 3, 1, 2])
    if output.activation == "sigmoid":
        p = add("Clip", [y, const("eps", 1e-6), const("one_minus_eps", 1 - 1e-6)], "clip")
        q = add("Sub", [const("one", 1.0), p], "one_minus_p")
        y = add("Sub", [add("Log", [p], "log_p"), add("Log", [q], "log_q")], "logit")
    elif output.activation == "softmax":
        y = add("Log", [add("Clip", [y, const("eps_softmax", 1e-6)], "clip")], "log_p")
    h, w = input_size
    batch_dims = add("Slice", [add("Shape", [y], "shape"), const("zero", [0], np.int64),
                               const("two", [2], np.int64)], "batch_dims")
    sizes = add("Concat", [batch_dims, const("hw", [h, w], np.int64)], "sizes", axis=0)
    # Resize to the same size is the identity; kept unconditional so one graph serves every case.
    y = add("Resize", [y, "", "", sizes], "resize", mode="linear",
            coordinate_transformation_mode="half_pixel")
    if output.binary:
        y = add("Concat", [add("Mul", [y, const("minus_half", -0.5)], "neg"),
                           add("Mul", [y, const("half", 0.5)], "pos")], "two_classes", axis=1)
    nodes.append(helper.make_node("Identity", [y], ["logits"], name="edgeseg.adapter/logits"))

    original = list(g.node)
    del g.node[:]
    g.node.extend([*before, *original, *nodes])
    g.initializer.extend(consts)
    n_dim: int | str = batch if batch is not None else "batch"
    kept_inputs = [i for i in g.input if i.name != input_name]
    del g.input[:]
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [n_dim, 3, h, w])
    g.input.extend([images, *kept_inputs])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n_dim, num_classes, h, w])])
    # Shapes inferred for the original (possibly other-batch) input would now contradict the new one.
    del g.value_info[:]
    return model


def check_graph_against_card(proto: Any, card: ModelCard, label: str) -> list[str]:
    """Check a ``--from-onnx`` graph's input and output against its card; what cannot be checked is returned.

    Args:
        proto: the graph.
        card: its card (beside it, or in its metadata).
        label: how errors name the graph (its path).

    Returns:
        Lines saying what was not validated, for the user.

    Raises:
        EdgesegError: an input or output that contradicts the card, or a card the runtime cannot honour.
    """
    card.require_input("edgeseg build --from-onnx", f"{label} (its card)")
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    h, w = card.input_size
    if len(inputs) != 1:
        raise EdgesegError(f"{label}: the graph takes {len(inputs)} inputs; the runtime feeds one image "
                           "batch")
    shape = _dims(inputs[0])
    if len(shape) != 4 or shape[1] != 3 or (shape[2], shape[3]) not in ((h, w), (None, None)):
        raise EdgesegError(f"{label}: input '{inputs[0].name}' has shape {_shape_text(shape)}; its card says "
                           f"(N, 3, {h}, {w})")
    if len(proto.graph.output) != 1:
        raise EdgesegError(f"{label}: the graph has {len(proto.graph.output)} outputs; the runtime reads one")
    out = proto.graph.output[0]
    dims = _dims(out)
    k = card.num_classes
    ok = (len(dims) == 4 and dims[1] in (k, None) and dims[2:] in ([h, w], [None, None])) or (
        len(dims) == 3 and dims[1:] in ([h, w], [None, None]))
    if not ok:
        raise EdgesegError(f"{label}: output '{out.name}' has shape {_shape_text(dims)}; its card says "
                           f"(N, {k}, {h}, {w}) logits or (N, {h}, {w}) labels")
    notes = ["preprocessing (mean/std, RGB order) is the card's: a graph cannot show what it was trained on"]
    if any(d is None for d in shape[1:] + dims[1:]):
        notes.append("some input/output dimensions are dynamic: only the static ones were checked")
    return notes


def _shape_text(dims: list[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def module_digest(module: Any) -> str:
    """sha256 of a module's class name and state (parameters and buffers), to key its build records."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_source(source: ModelSource, spec: CardSpec, *, overrides: dict[str, Any] | None = None,
                output_name: str | None = None, batch: int = 1, shapes: tuple[int, int, int] | None = None,
                opset: int = 18, note: Callable[[str], None] | None = None) -> Loaded:
    """Load any build source with its loader (see the module's table).

    Args:
        source: what ``--model`` / ``build(model)`` named.
        spec: the user's card values (flags over ``--card``).
        overrides: ``--set`` config fields (presets only). Defaults to none.
        output_name: ``--output-name``. Defaults to the automatic choice.
        batch: static batch of the build. Defaults to 1.
        shapes: dynamic batch profile. Defaults to none.
        opset: the build's ONNX opset. Defaults to 18.
        note: receives the loader's notes for the user. Defaults to dropping them.
    """
    if overrides and source.kind != "preset":
        raise EdgesegError(f"--set: only a zoo preset takes config fields; --model {source.ref} is a "
                           f"{source.kind}")
    if output_name is not None and source.kind in ("checkpoint", "preset"):
        raise EdgesegError(f"--output-name {output_name}: zoo networks have one output "
                           f"(--model {source.ref})")
    loader: _Loader
    if source.kind == "preset":
        loader = ModelFromPreset(source.ref, spec, overrides)
    elif source.kind == "checkpoint":
        loader = ModelFromBundle(source.ref, spec)
    elif source.kind == "program":
        loader = ModelFromProgram(source.ref, spec, output_name=output_name,
                                  batch=shapes[1] if shapes else batch)
    elif source.kind == "module":
        loader = ModelFromModule(source.module, spec, output_name=output_name)
    elif source.kind == "onnx":
        loader = GraphFromOnnx(source.ref, spec, output_name=output_name, batch=batch, shapes=shapes,
                               opset=opset)
    else:
        raise EdgesegError(f"unknown model source kind {source.kind!r}")
    loaded = loader()
    for line in loaded.notes:
        if note is not None:
            note(line)
    return loaded
