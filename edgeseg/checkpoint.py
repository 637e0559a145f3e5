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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["ModelCard", "save_model", "load_model", "load_card", "read_checkpoint", "BUNDLE_FORMAT"]

BUNDLE_FORMAT = "edgeseg.model/1"

# ImageNet statistics on 0..1 RGB: the default for every backbone in the zoo.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelCard:
    """What a deployed model needs besides its weights.

    Args:
        preset: registry name passed to :func:`edgeseg.models.build_model`.
        num_classes: number of output classes.
        overrides: config fields changed from the preset's defaults (``--set key=value``).
        class_names: one name per class index.
        palette: one RGB triple per class, for overlays.
        mean: per-channel RGB mean on 0..1 pixel values. Defaults to ImageNet's.
        std: per-channel RGB std on 0..1 pixel values. Defaults to ImageNet's.
        input_size: (H, W) the model was trained/evaluated at; the deployment input shape.
        ignore_index: label value excluded from loss and metrics.
        dataset: dataset spec the model was trained on (``KIND:ROOT``), informational.
        metrics: validation metrics recorded at save time (``miou``, ``pa`` ... in percent).
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
    dataset: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"], d["input_size"] = list(self.mean), list(self.std), list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgesegError(f"model card has unknown fields {unknown}; written by a newer edgeseg?")
        d = dict(d)
        for key in ("mean", "std", "input_size"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def build(self) -> Any:
        """Build the (untrained) model this card describes."""
        from edgeseg.models import build_model

        return build_model(self.preset, num_classes=self.num_classes, **self.overrides)


def save_model(path: str | os.PathLike[str], model: Any, card: ModelCard) -> None:
    """Write a deployable bundle atomically."""
    import torch

    from edgeseg._io import atomic_write

    payload = {"format": BUNDLE_FORMAT, "card": card.to_dict(), "state_dict": model.state_dict()}
    with atomic_write(path) as f:
        torch.save(payload, f)


def read_checkpoint(path: str | os.PathLike[str], what: str = "edgeseg checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; failures become one-line errors.

    Args:
        path: the file to read.
        what: how the error messages name the expected file, e.g. ``"training checkpoint"``.
    """
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"{p}: {what} not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"{p}: not a readable {what} ({first})") from None


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    obj = read_checkpoint(path)
    if not isinstance(obj, dict) or "card" not in obj or "state_dict" not in obj:
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (no 'card'/'state_dict'; a bare state dict?)")
    return obj


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read only the model card of a bundle or training checkpoint."""
    return ModelCard.from_dict(_read(path)["card"])


def load_model(path: str | os.PathLike[str]) -> tuple[Any, ModelCard]:
    """Rebuild the model from a bundle or training checkpoint, load its weights, set eval mode.

    Returns:
        ``(model, card)``.

    Raises:
        EdgesegError: the file is missing, not a checkpoint, or its weights do not fit its card.
    """
    obj = _read(path)
    card = ModelCard.from_dict(obj["card"])
    model = card.build()
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise EdgesegError(f"{path}: weights do not match preset '{card.preset}': {first}") from None
    return model.eval(), card
