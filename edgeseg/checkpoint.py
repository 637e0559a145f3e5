"""The deployable model bundle: weights plus everything needed to rebuild and feed the model.

A bundle is the contract between training and deployment. ``edgeseg build``, ``validate``, the
runtime and the video pipeline all start from :func:`load_model`, so the preprocessing they apply is
the model's own, read from here, never re-typed on a command line.

File format (a ``torch.save`` dict of plain types, loadable with ``weights_only=True``)::

    {"format": "edgeseg.model/1", "card": ModelCard as dict, "state_dict": {...}}

Training checkpoints (model + optimizer + scheduler + RNG) are a superset written by
:mod:`edgeseg.train`; :func:`load_model` reads both.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["ModelCard", "save_model", "load_model", "load_card", "read_checkpoint", "BUNDLE_FORMAT",
           "LAYOUTS", "CHANNEL_ORDERS", "RGB_INDEX"]

BUNDLE_FORMAT = "edgeseg.model/1"

# ImageNet statistics on 0..1 RGB: the default for every backbone in the zoo.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Input tensor layouts a card can name: ``(N, 3, H, W)`` or ``(N, H, W, 3)``.
LAYOUTS = ("nchw", "nhwc")
#: Channel orders a card can name.
CHANNEL_ORDERS = ("rgb", "bgr")
#: Each channel order's channels as indices into R, G, B (a card's mean/std are given in RGB).
RGB_INDEX = {"rgb": (0, 1, 2), "bgr": (2, 1, 0)}


@dataclass
class ModelCard:
    """What a deployed model needs besides its weights.

    Every field is checked when a card is made (:meth:`check`), so a card read from disk is either
    usable or refused with one line naming its file and field.

    Args:
        preset: registry name passed to :func:`edgeseg.models.build_model`.
        num_classes: number of output classes, >= 1.
        overrides: config fields changed from the preset's defaults (``--set key=value``).
        class_names: one name per class index, or empty.
        palette: one RGB triple (0..255) per class, for overlays, or empty.
        mean: per-channel RGB mean on 0..1 pixel values. Defaults to ImageNet's.
        std: per-channel RGB std on 0..1 pixel values, each > 0. Defaults to ImageNet's.
        input_size: (H, W) the model was trained/evaluated at; the deployment input shape.
        ignore_index: label value excluded from loss and metrics.
        layout: the network input's layout, ``"nchw"`` or ``"nhwc"``. Defaults to nchw (every card
            written before this field existed describes an NCHW network).
        channels: the network input's channel order, ``"rgb"`` or ``"bgr"``. Defaults to rgb.
        dataset: dataset spec the model was trained on (``KIND:ROOT``), informational.
        metrics: validation metrics recorded at save time (``miou``, ``pa`` ... in percent).
        source: how errors name the card (its file); not a field, not saved. Defaults to
            ``"model card"``.
    """

    preset: str
    num_classes: int
    overrides: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] = (512, 512)
    ignore_index: int = 255
    layout: str = "nchw"
    channels: str = "rgb"
    dataset: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    source: InitVar[str] = "model card"

    def __post_init__(self, source: str) -> None:
        self.check(source)

    def check(self, source: str = "model card") -> None:
        """Check every field; make numbers plain Python ones and mean/std/input_size tuples.

        Raises:
            EdgesegError: ``"<source>: field '<name>' ..."`` for the first bad field.
        """

        def bad(name: str, expected: str) -> EdgesegError:
            return EdgesegError(f"{source}: field '{name}' must be {expected}, got {getattr(self, name)!r}")

        if not isinstance(self.preset, str) or not self.preset:
            raise bad("preset", "a non-empty model preset name")
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise bad("num_classes", "an integer >= 1")
        if not isinstance(self.overrides, dict) or not all(isinstance(k, str) for k in self.overrides):
            raise bad("overrides", "an object of config fields")
        n = self.num_classes
        if (not isinstance(self.class_names, list) or len(self.class_names) not in (0, n)
                or not all(isinstance(c, str) for c in self.class_names)):
            raise bad("class_names", f"a list of {n} names (num_classes) or empty")
        if (not isinstance(self.palette, list) or len(self.palette) not in (0, n)
                or not all(_is_rgb(c) for c in self.palette)):
            raise bad("palette", f"a list of {n} RGB triples in 0..255 (num_classes) or empty")
        if not _is_seq(self.mean, 3) or not all(_is_real(v) for v in self.mean):
            raise bad("mean", "3 finite numbers (R, G, B)")
        # std divides every pixel: 0 would turn images into infinities, < 0 would flip them.
        if not _is_seq(self.std, 3) or not all(_is_real(v) and v > 0 for v in self.std):
            raise bad("std", "3 finite numbers > 0 (R, G, B)")
        if not _is_seq(self.input_size, 2) or not all(_is_int(v) and v >= 1 for v in self.input_size):
            raise bad("input_size", "2 integers >= 1 (H, W)")
        if not _is_int(self.ignore_index):
            raise bad("ignore_index", "an integer")
        if self.layout not in LAYOUTS:
            raise bad("layout", " or ".join(LAYOUTS))
        if self.channels not in CHANNEL_ORDERS:
            raise bad("channels", " or ".join(CHANNEL_ORDERS))
        if not isinstance(self.dataset, str):
            raise bad("dataset", "a string")
        if not isinstance(self.metrics, dict) or not all(
            isinstance(k, str) and (v is None or _is_real(v, finite=False)) for k, v in self.metrics.items()
        ):
            raise bad("metrics", "an object of numbers")
        self.num_classes, self.ignore_index = int(self.num_classes), int(self.ignore_index)
        self.palette = [[int(v) for v in rgb] for rgb in self.palette]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]

    def require_input(self, consumer: str, source: str, *, any_channels: bool = False) -> None:
        """Refuse a card whose network input ``consumer`` cannot feed: NCHW, and RGB unless
        ``any_channels`` (a consumer that feeds either order).

        Builds fold a source's layout and channel order into their graph (their cards say nchw, rgb);
        another value comes from a hand-written card, and a consumer that would feed it NCHW RGB
        anyway must stop instead.

        Args:
            consumer: what feeds the network, e.g. ``"edgeseg validate"``.
            source: how the error names the card (its file).
            any_channels: ``consumer`` honours ``channels``. Defaults to False.

        Raises:
            EdgesegError: one line naming the card field and its value.
        """

        def refuse(key: str, fed: str) -> EdgesegError:
            value = getattr(self, key)
            return EdgesegError(f"{source}: {key} {value!r}: {consumer} feeds {fed} input only (build from "
                                f"the source with --{key} {value} to fold the conversion into the graph)")

        if self.layout != "nchw":
            raise refuse("layout", "NCHW")
        if self.channels != "rgb" and not any_channels:
            raise refuse("channels", "RGB")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"], d["input_size"] = list(self.mean), list(self.std), list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "model card") -> ModelCard:
        """Make a card from its saved form (``to_dict``), checking every field.

        Args:
            d: the saved card.
            source: how errors name it, e.g. the path of ``card.json``.

        Raises:
            EdgesegError: not an object, unknown or missing fields, or a bad field.
        """
        if not isinstance(d, dict):
            raise EdgesegError(f"{source}: a model card must be an object of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgesegError(f"{source}: model card has unknown fields {unknown}; "
                               "written by a newer edgeseg?")
        missing = [k for k in ("preset", "num_classes") if k not in d]
        if missing:
            raise EdgesegError(f"{source}: model card lacks field(s) {missing}")
        return cls(**d, source=source)

    def build(self) -> Any:
        """Build the (untrained) model this card describes."""
        from edgeseg.models import build_model

        return build_model(self.preset, num_classes=self.num_classes, **self.overrides)


# numbers.* so NumPy scalars (a dataset's palette, a transform's mean) pass; bool is not a number here.
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any, finite: bool = True) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and (not finite or math.isfinite(v))


def _is_seq(v: Any, length: int) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == length


def _is_rgb(v: Any) -> bool:
    return _is_seq(v, 3) and all(_is_int(c) and 0 <= c <= 255 for c in v)


def save_model(path: str | os.PathLike[str], model: Any, card: ModelCard) -> None:
    """Write a deployable bundle atomically."""
    from edgeseg._io import save_torch

    save_torch(path, {"format": BUNDLE_FORMAT, "card": card.to_dict(), "state_dict": model.state_dict()})


def read_checkpoint(path: str | os.PathLike[str], what: str = "edgeseg checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; failures become one-line errors.

    Only a complete ``torch.save`` archive (a zip file, the only format edgeseg writes) reaches
    ``torch.load``; objects other than tensors and plain Python types are refused, never built.

    Args:
        path: the file to read.
        what: how the error messages name the expected file, e.g. ``"training checkpoint"``.
    """
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"{p}: {what} not found")
    # torch.load hands anything that is not a zip to the legacy reader, whose errors on a text or
    # truncated file are an IndexError or KeyError from deep inside pickle: refuse those here.
    try:
        with open(p, "rb") as f:  # opened here: is_zipfile(path) reports an unreadable file as "not a zip"
            is_zip = zipfile.is_zipfile(f)
    except OSError as e:
        raise EdgesegError(f"{p}: cannot read this {what} ({e.strerror or e})") from None
    if not is_zip:
        size = p.stat().st_size
        kind = "an empty file" if size == 0 else f"not a complete torch.save archive ({size} bytes)"
        raise EdgesegError(f"{p}: not a readable {what}: {kind}; truncated, or another kind of file?")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # The weights-only unpickler names the refused global on one of its lines.
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        raise EdgesegError(
            f"{p}: refused: this {what} holds Python objects other than tensors and plain types"
            f"{f' ({detail})' if detail else ''}; edgeseg loads with weights_only=True and never runs them"
        ) from None
    except Exception as e:  # a crafted or damaged archive can make the reader raise anything
        raise EdgesegError(f"{p}: not a readable {what} ({_first_line(e)})") from None


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    line = re.sub(r"^\[enforce fail at [^\]]*\]\W*", "", line)  # torch's C++ source location
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    obj = read_checkpoint(path)
    if not isinstance(obj, dict) or "card" not in obj or "state_dict" not in obj:
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (no 'card'/'state_dict'; a bare state dict?)")
    return obj


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read a model card: a ``card.json``, or the card inside a bundle or training checkpoint.

    Raises:
        EdgesegError: the file is missing or unreadable, or a card field is bad (naming the file).
    """
    from edgeseg._io import read_json

    if Path(path).suffix == ".json":
        return ModelCard.from_dict(read_json(path), source=os.fspath(path))
    return ModelCard.from_dict(_read(path)["card"], source=f"{path} (its card)")


def load_model(path: str | os.PathLike[str]) -> tuple[Any, ModelCard]:
    """Rebuild the model from a bundle or training checkpoint, load its weights, set eval mode.

    Returns:
        ``(model, card)``.

    Raises:
        EdgesegError: the file is missing, not a checkpoint, its card is bad, or its weights do not
            fit its card.
    """
    import torch

    obj = _read(path)
    card = ModelCard.from_dict(obj["card"], source=f"{path} (its card)")
    try:
        model = card.build()
    except EdgesegError as e:
        raise EdgesegError(f"{path} (its card): {e}") from None
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgesegError(f"{path}: 'state_dict' must map parameter names to tensors")
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise EdgesegError(f"{path}: weights do not match preset '{card.preset}' ({mismatch})")
    model.load_state_dict(state)
    return model.eval(), card


def _state_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """What keeps ``found`` from loading strictly into a model whose state dict is ``expected``."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. '{missing[0]}'")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. '{unexpected[0]}'")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape, e.g. '{k}' {tuple(found[k].shape)} in the file, "
                     f"{tuple(expected[k].shape)} in the model")
    return "; ".join(parts)
