"""Datasets, the synthetic generator and joint image/mask transforms.

Every dataset yields ``(image float32 (3, H, W) normalised, mask int64 (H, W))`` with 255 = ignore
and exposes ``class_names``, ``palette`` (RGB triples) and ``num_classes``. Open one with
:func:`load_dataset` or from a ``KIND:ROOT[:split]`` spec with :func:`parse_spec`::

    kind, root, split = parse_spec("voc:/data/VOCdevkit/VOC2012:val")
    ds = load_dataset(kind, root, split, transform=EvalTransform(512))

Kinds: ``voc``, ``cityscapes``, ``celebamask``, ``folder``, ``synthetic`` (root unused).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.data._base import IGNORE_INDEX, SegmentationDataset
from edgeseg.data.celebamask import CelebAMaskHQ
from edgeseg.data.cityscapes import Cityscapes
from edgeseg.data.folder import FolderDataset
from edgeseg.data.synthetic import SyntheticShapes, write_synthetic
from edgeseg.data.transforms import EvalTransform, TrainTransform
from edgeseg.data.voc import VOCSegmentation
from edgeseg.errors import EdgesegError

__all__ = [
    "load_dataset",
    "parse_spec",
    "DATASET_KINDS",
    "IGNORE_INDEX",
    "SegmentationDataset",
    "VOCSegmentation",
    "Cityscapes",
    "CelebAMaskHQ",
    "FolderDataset",
    "SyntheticShapes",
    "write_synthetic",
    "TrainTransform",
    "EvalTransform",
]


def _synthetic(root: str | Path, split: str | None = None, **options: Any) -> SyntheticShapes:
    # Generated on the fly: the root of a "synthetic:" spec has nothing to point at.
    return SyntheticShapes(split, **options)


# kind -> opener(root, split, **options)
DATASET_KINDS: dict[str, Callable[..., SegmentationDataset]] = {
    "voc": VOCSegmentation,
    "cityscapes": Cityscapes,
    "celebamask": CelebAMaskHQ,
    "folder": FolderDataset,
    "synthetic": _synthetic,
}


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """Split a ``KIND:ROOT[:split]`` dataset spec.

    The split is the part after the *last* colon when it is a plain word, so Windows drive letters
    and colons inside ROOT survive (``folder:C:/data:val``). ``synthetic`` needs no root
    (``synthetic``, ``synthetic::val``).

    Args:
        spec: e.g. ``"cityscapes:/data/cityscapes:val"``.

    Returns:
        ``(kind, root, split)``; ``split`` is ``None`` when omitted (each kind's default).

    Raises:
        EdgesegError: unknown kind or missing root.
    """
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in DATASET_KINDS:
        raise EdgesegError(
            f"dataset spec {spec!r}: unknown kind '{kind}' (expected one of {', '.join(DATASET_KINDS)})"
        )
    root, split = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and tail and "/" not in tail and "\\" not in tail and (head or kind == "synthetic"):
        # "C:/x" → head "C", tail "/x" contains a slash: not a split.
        root, split = head, tail
    if not root and kind != "synthetic":
        raise EdgesegError(f"dataset spec {spec!r}: missing ROOT (expected {kind}:ROOT[:split])")
    return kind, root, split


def load_dataset(
    kind: str, root: str | Path, split: str | None = None, **options: Any
) -> SegmentationDataset:
    """Open a dataset by kind.

    Args:
        kind: one of :data:`DATASET_KINDS`.
        root: dataset folder (ignored for ``synthetic``).
        split: split name; ``None`` means the kind's default (``train``; the whole folder for
            ``folder``).
        **options: passed to the dataset class: ``transform`` and ``seed`` for all kinds;
            ``num_classes`` for ``folder``; ``size``, ``num_images``, ``data_seed`` for
            ``synthetic``.

    Returns:
        The dataset.

    Raises:
        EdgesegError: unknown kind or option, or any data problem the reader detects.
    """
    opener = DATASET_KINDS.get(kind.lower())
    if opener is None:
        raise EdgesegError(f"unknown dataset kind '{kind}' (expected one of {', '.join(DATASET_KINDS)})")
    try:
        return opener(root, split, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise EdgesegError(f"dataset kind '{kind}': {e}") from None
        raise
