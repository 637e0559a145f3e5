"""Cityscapes fine annotations, mapped to the 19 official training classes.

Layout::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``labelIds`` holds the 34 raw Cityscapes ids (0..33); the official ``trainId`` table (from the
``cityscapesScripts`` label definitions) maps 19 of them to 0..18 and every other id to 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data._base import IGNORE_INDEX, FileSegmentationDataset, Transform
from edgeseg.errors import EdgesegError

__all__ = ["Cityscapes", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "LABEL_ID_TO_TRAIN_ID"]

# raw labelId -> (trainId, name, colour) for the 19 evaluated classes.
_TRAIN_CLASSES = [
    (7, "road", (128, 64, 128)),
    (8, "sidewalk", (244, 35, 232)),
    (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)),
    (13, "fence", (190, 153, 153)),
    (17, "pole", (153, 153, 153)),
    (19, "traffic light", (250, 170, 30)),
    (20, "traffic sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)),
    (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)),
    (24, "person", (220, 20, 60)),
    (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)),
    (27, "truck", (0, 0, 70)),
    (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)),
    (32, "motorcycle", (0, 0, 230)),
    (33, "bicycle", (119, 11, 32)),
]
CITYSCAPES_CLASSES = [name for _, name, _ in _TRAIN_CLASSES]
CITYSCAPES_PALETTE = [list(color) for _, _, color in _TRAIN_CLASSES]
_NUM_LABEL_IDS = 34  # raw ids 0..33 (the license-plate id -1 never appears in the PNGs)
LABEL_ID_TO_TRAIN_ID = {label_id: train_id for train_id, (label_id, _, _) in enumerate(_TRAIN_CLASSES)}

# Lookup table over every uint8 value: valid raw ids map to a train id or 255; anything else is
# marked -1 so decode_labels can reject files that are not labelIds (e.g. a *_color.png export).
_LUT = np.full(256, -1, dtype=np.int64)
_LUT[:_NUM_LABEL_IDS] = IGNORE_INDEX
_LUT[IGNORE_INDEX] = IGNORE_INDEX
for _label_id, _train_id in LABEL_ID_TO_TRAIN_ID.items():
    _LUT[_label_id] = _train_id


class Cityscapes(FileSegmentationDataset):
    """Cityscapes ``gtFine`` semantic segmentation with the 19 official train ids.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``. Defaults to ``"train"``.
        transform: see :class:`~edgeseg.data._base.SegmentationDataset`.
        seed: see :class:`~edgeseg.data._base.SegmentationDataset`.

    Raises:
        EdgesegError: a split folder is missing, an image has no label file, or the split is empty.
    """

    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        root = Path(root)
        split = split or "train"
        image_dir, label_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise EdgesegError(f"{d}: folder not found (Cityscapes split '{split}')")
        samples = []
        for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            label = label_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if not label.is_file():
                raise EdgesegError(f"{label}: label file not found for image {image}")
            samples.append((image, label))
        super().__init__(samples, f"{image_dir}", transform=transform, seed=seed)

    def decode_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map raw labelIds to train ids; values that are no Cityscapes labelId are an error."""
        mapped = _LUT[np.clip(raw, 0, 255)]
        bad = np.unique(raw[(mapped < 0) | (raw > 255)])
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:8])
            raise EdgesegError(
                f"{path}: values {{{shown}}} are not Cityscapes labelIds (0..33); is it a labelIds PNG?"
            )
        return mapped
