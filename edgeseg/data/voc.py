"""Pascal VOC 2012 segmentation.

Layout (``root`` is ``VOC2012`` itself or a folder holding ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette PNG: pixel values are class ids, 255 = void
    ImageSets/Segmentation/<split>.txt  one <id> per line (train, val, trainval)

The label PNGs are read as palette *indices* (PIL mode "P"), never as colours.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.data._base import FileSegmentationDataset, Transform, bit_palette
from edgeseg.errors import EdgesegError

__all__ = ["VOCSegmentation", "VOC_CLASSES"]

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip


def _find_root(root: Path) -> Path:
    nested = root / "VOCdevkit" / "VOC2012"
    return nested if nested.is_dir() else root


class VOCSegmentation(FileSegmentationDataset):
    """Pascal VOC 2012 semantic segmentation (21 classes).

    Args:
        root: the ``VOC2012`` folder, or a folder containing ``VOCdevkit/VOC2012``.
        split: name of a list in ``ImageSets/Segmentation``. Defaults to ``"train"``.
        transform: see :class:`~edgeseg.data._base.SegmentationDataset`.
        seed: see :class:`~edgeseg.data._base.SegmentationDataset`.

    Raises:
        EdgesegError: a folder or the split list is missing, or the split is empty.
    """

    class_names = VOC_CLASSES
    palette = bit_palette(len(VOC_CLASSES))

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        base = _find_root(Path(root))
        split = split or "train"
        for sub in ("JPEGImages", "SegmentationClass"):
            if not (base / sub).is_dir():
                raise EdgesegError(f"{base / sub}: folder not found (is {root} a Pascal VOC 2012 root?)")
        listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise EdgesegError(f"{listing}: split list not found (VOC split '{split}')")
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        samples = [(base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png") for i in ids]
        super().__init__(samples, f"{listing}", transform=transform, seed=seed)
