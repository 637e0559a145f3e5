"""Options of ``edgeseg build`` and where the model, calibration and validation data come from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeseg._names import safe_name
from edgeseg.assets import DEMO_MODEL
from edgeseg.build_folder import Precision
from edgeseg.errors import EdgesegError
from edgeseg.export.onnx_export import DEFAULT_OPSET
from edgeseg.sources import ModelSource, resolve_model

__all__ = [
    "BuildOptions",
    "ModelSource",
    "PLUGINS",
    "DEMO_MODEL",
    "DEMO_CALIBRATION",
    "DEFAULT_PLUGIN_LIB",
    "build_name",
    "resolve_model",
]

#: ``--plugin`` values: the fused DDC block exported as the ``EdgesegFusedDDC`` TensorRT plugin.
PLUGINS = ("fused-ddc",)
#: Manifest (in ``edgeseg/assets/calibration/``) of the demo model's calibration and validation data.
DEMO_CALIBRATION = "demo"
#: Where ``cpp_ext``'s CMake build puts the ``EdgesegFusedDDC`` TensorRT plugin library.
DEFAULT_PLUGIN_LIB = Path("build/trt/libedgeseg_trt_plugins.so")


@dataclass
class BuildOptions:
    """Everything ``edgeseg build`` can be told; None means "the documented default".

    With ``target``, the options left None take the profile's ``[build]`` values first
    (:mod:`edgeseg.stages.targets`); explicitly given options always win.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8``. Defaults to what ``from_onnx`` encodes, else the
            target's, else int8.
        model: a zoo preset name, an edgeseg bundle (``.pt``), a ``torch.export`` program (``.pt2``),
            an FP32 ONNX graph (``.onnx``), or (from Python) any ``torch.nn.Module``
            (:mod:`edgeseg.sources`). Defaults to the shipped demo model.
        name: build folder name. Defaults to the file's stem, the preset name or the module's class.
        out_dir: parent of build folders. Defaults to ``engines``.
        input_size: ``(H, W)``. Defaults to the target's, else what the graph fixes, else the card's.
        card: ``card.yaml`` with the card keys (``input``, ``layout``, ``channels``, ``mean``, ``std``,
            ``num_classes``, ``classes``); the options below win over it. Defaults to none.
        num_classes: class count (a preset is built with it). Defaults to the source's.
        overrides: preset config fields (``--set key=value``). Defaults to none.
        layout: the network's input layout, ``nchw`` or ``nhwc``. Defaults to what the graph fixes,
            else nchw.
        channels: the network's channel order, ``rgb`` or ``bgr``. Defaults to rgb.
        mean: per-channel mean in 0..255 pixel units: pixel = (value - mean) / std. Defaults to the
            source card's (ImageNet's).
        std: per-channel std in 0..255 pixel units (a network fed [0, 1] takes 255,255,255).
            Defaults to the source card's (ImageNet's).
        classes: a file of class names, one a line. Defaults to none.
        output_name: which output of a dict/tuple/multi-output network (a key, an index, a graph
            output name). Defaults to the only one, else ``out``/``logits``.
        batch: static batch size. Defaults to the target's, else 1.
        shapes: ``(min, opt, max)`` batch sizes for a dynamic batch. Defaults to the target's, else
            static. Giving ``batch`` or ``shapes`` replaces both of the target's.
        opset: ONNX opset of the export. Defaults to the target's, else 18.
        output: ``logits`` or ``argmax``. Defaults to logits.
        calib_data: calibration source (folder / ``KIND:ROOT[:split]`` / manifest). Defaults to
            the demo manifest for the demo model, else the card's dataset (train split).
        calib_size: calibration images. Defaults to the manifest's ``size``, else 32.
        calib_method: ``max``, ``entropy`` or ``percentile``. Defaults to max.
        int8_high_precision: dtype of the non-quantized ops of the INT8 graph. Defaults to fp16.
        max_miou_drop: accuracy guard budget in mIoU points. Defaults to 1.0.
        guard: run the INT8 accuracy guard. False quantizes every layer the placement chooses and
            skips the guard on purpose (the report says so). Defaults to True.
        val_data: labelled validation set. Defaults to the manifest's ``val_data`` or the card's
            dataset (val split).
        val_size: images in each of the tuning and held-out sets. Defaults to the manifest's
            ``val_size``, else :func:`edgeseg.data.splits.default_set_size` of the input (64 at
            the demo's size, 16 at 512x1024 and above).
        min_agreement: validation gate (pixel agreement with the FP32 reference, percent) for the
            built precision. Defaults to :class:`edgeseg.validate.Tolerances`' per-precision value.
        from_onnx: start from this precision ONNX (skips export and calibration).
        require_engine: fail when TensorRT is missing instead of skipping the engine.
        workspace: TensorRT workspace in GiB. Defaults to the target's, else the builder's default.
        dla_core: DLA core (Jetson); must exist on the target when one is given. Defaults to the
            target's, else the GPU.
        timing_cache: TensorRT timing-cache file. Defaults to ``<build>/timing.cache``.
        plugin: ``fused-ddc`` to export DDC blocks as the TensorRT plugin (fp32 builds only).
            Defaults to none.
        plugin_lib: the plugin's shared library for the engine build. Defaults to
            :data:`DEFAULT_PLUGIN_LIB`.
        rerun: stages to run again even when their records say they are up to date (``calibrate``
            also ignores its keyed cache). Later stages re-run when their inputs change. Defaults
            to none.
        target: target profile, a name in ``edgeseg/assets/targets/`` or a ``.toml`` path (recorded in
            build.json). Defaults to none.
    """

    precision: Precision | None = None
    model: Any = None  # str | torch.nn.Module | None; Any keeps torch out of this module's imports
    name: str | None = None
    out_dir: Path = Path("engines")
    input_size: tuple[int, int] | None = None
    card: Path | None = None
    num_classes: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None
    channels: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    classes: Path | None = None
    output_name: str | None = None
    batch: int = None  # type: ignore[assignment]  # resolved to an int in __post_init__
    shapes: tuple[int, int, int] | None = None
    opset: int = None  # type: ignore[assignment]  # resolved to an int in __post_init__
    output: str = "logits"
    calib_data: str | None = None
    calib_size: int | None = None
    calib_method: str = "max"
    int8_high_precision: str = "fp16"
    max_miou_drop: float = 1.0
    guard: bool = True
    val_data: str | None = None
    val_size: int | None = None
    min_agreement: float | None = None
    from_onnx: Path | None = None
    require_engine: bool = False
    workspace: float | None = None
    dla_core: int | None = None
    timing_cache: Path | None = None
    plugin: str | None = None
    plugin_lib: Path | None = None
    rerun: tuple[str, ...] = ()
    target: str | None = None

    def __post_init__(self) -> None:
        from edgeseg.precision.ranges import CALIBRATION_METHODS

        # The card names where its input size came from, so a graph that fixes another one says so.
        from_target = self.target is not None and self.input_size is None
        self._input_from = f"--target {self.target} (its input_size)" if from_target else "--input"
        if self.target is not None:
            self._apply_target(self.target)
        if self.batch is None:
            self.batch = 1
        if self.opset is None:
            self.opset = DEFAULT_OPSET

        if self.precision is not None:
            self.precision = Precision.parse(self.precision, "--precision")
        if self.name is not None:
            safe_name(self.name, "--name")
        if self.calib_method not in CALIBRATION_METHODS:
            raise EdgesegError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                               f"got {self.calib_method!r}")
        if self.calib_size is not None and self.calib_size < 1:
            raise EdgesegError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.val_size is not None and self.val_size < 1:
            raise EdgesegError(f"--val-size must be >= 1, got {self.val_size}")
        if self.max_miou_drop < 0:
            raise EdgesegError(f"--max-miou-drop must be >= 0, got {self.max_miou_drop}")
        if self.int8_high_precision not in ("fp16", "fp32"):
            raise EdgesegError("--int8-high-precision must be fp16 or fp32, "
                               f"got {self.int8_high_precision!r}")
        if self.output not in ("logits", "argmax"):
            raise EdgesegError(f"--output must be logits or argmax, got {self.output!r}")
        if self.plugin is not None and self.plugin not in PLUGINS:
            raise EdgesegError(f"--plugin must be one of {', '.join(PLUGINS)}, got {self.plugin!r}")
        if self.workspace is not None and self.workspace <= 0:
            raise EdgesegError(f"--workspace must be > 0 GiB, got {self.workspace}")
        if self.dla_core is not None and self.shapes is not None and len(set(self.shapes)) > 1:
            # Refused here, not after export and quantization: DLA has no dynamic dimensions.
            raise EdgesegError(f"--shapes {','.join(map(str, self.shapes))} with --dla-core {self.dla_core}: "
                               "DLA engines need one batch size (use --batch)")
        self.card_spec()  # bad card values and an unreadable --card / --classes fail here, before any work

    def card_spec(self) -> Any:
        """The user's card values (:class:`edgeseg.sources.CardSpec`): these options over ``--card``."""
        from edgeseg.sources import CardSpec, read_class_names

        flags = CardSpec(input_size=self.input_size, layout=self.layout, channels=self.channels,
                         mean=self.mean, std=self.std, num_classes=self.num_classes,
                         class_names=read_class_names(self.classes) if self.classes else None,
                         where={"input_size": self._input_from})
        return flags.over(CardSpec.from_file(self.card)) if self.card else flags

    def to_dict(self) -> dict[str, Any]:
        plain: dict[type, Any] = {Path: os.fspath, Precision: str}
        # An in-memory module is recorded by its class (its weights are keyed by the stages' digest).
        model = self.model if self.model is None or isinstance(self.model, str) else type(self.model).__name__
        values = {**{f.name: getattr(self, f.name) for f in fields(self)}, "model": model}
        return {k: plain.get(type(v), lambda x: x)(v) for k, v in values.items()}

    def _apply_target(self, target: str) -> None:
        """Fill the options left None from the target profile's ``[build]`` table."""
        from edgeseg.stages.targets import load_target

        profile = load_target(target)
        profile.check_dla_core(self.dla_core, "--dla-core")
        defaults = profile.build
        # A graph given with --from-onnx already holds its precision; the profile's would only clash.
        if self.precision is None and self.from_onnx is None and defaults.precision is not None:
            self.precision = Precision.parse(defaults.precision, f"{profile.path}: build.precision")
        # Batch and shapes are one choice (static or dynamic): either given replaces both.
        if self.batch is None and self.shapes is None:
            self.batch, self.shapes = defaults.batch, defaults.shapes  # type: ignore[assignment]
        for key in ("workspace", "dla_core", "opset", "input_size"):
            if getattr(self, key) is None:
                setattr(self, key, getattr(defaults, key))


def build_name(options: BuildOptions, default: str, source: str) -> str:
    """The build folder's name: ``--name``, else ``default`` (derived from ``source``), checked safe.

    Raises:
        EdgesegError: a name that is empty, has characters outside the safe set, or would resolve
            outside ``--out-dir``.
    """
    what = "--name" if options.name else f"build name {default!r} taken from {source} (pass --name)"
    return safe_name(options.name or default, what, parent=options.out_dir)
