"""CelebAMask-HQ face parsing: per-part binary masks combined into 19 classes.

Layout::

    CelebA-HQ-img/<i>.jpg                                  1024×1024 faces, i = 0 .. 29999
    CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png  512×512 binary mask per annotated part
    CelebA-HQ-to-CelebA-mapping.txt                         idx, orig_idx, orig_file

Label construction follows the dataset authors' preprocessing script (``g_mask.py``): start from
background (0) and paint each part file that exists in the fixed order of :data:`CELEBAMASK_CLASSES`
(skin = 1 ... cloth = 18), so a later part overwrites an earlier one where they overlap (hair over
skin, cloth over neck). Their face-parsing code then resizes the images to the 512×512 mask size;
edgeseg does the same (bilinear, antialiased), so labels are never interpolated.

Splits: ``<root>/<split>.txt`` (one image index per line) if present; otherwise the official
partition, the one of CelebA itself (dataset README), derived from the mapping file exactly as the
authors' ``g_partition.py`` does: CelebA index in [162771, 182638) → val, ≥ 182638 → test, the
rest → train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgeseg.data._base import SegmentationDataset, Transform, read_image, read_label_file, to_tensors
from edgeseg.errors import EdgesegError

__all__ = ["CelebAMaskHQ", "CELEBAMASK_CLASSES", "CELEBAMASK_PALETTE"]

CELEBAMASK_CLASSES = [
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
]  # fmt: skip
# The colours the dataset authors' visualisation uses, in class order.
CELEBAMASK_PALETTE = [
    [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204], [0, 255, 255],
    [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0], [0, 0, 153], [0, 0, 204],
    [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51], [0, 204, 0],
]  # fmt: skip

_IMAGES = "CelebA-HQ-img"
_MASKS = "CelebAMask-HQ-mask-anno"
_MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
_PER_FOLDER = 2000  # the annotation folders hold 2000 consecutive images each
_VAL_START, _TEST_START = 162771, 182638  # CelebA indices where val / test begin


def _read_index_list(path: Path) -> list[int]:
    try:
        return [int(tok) for tok in path.read_text().split()]
    except ValueError:
        raise EdgesegError(f"{path}: expected one integer image index per line") from None


def _official_split(mapping: Path, split: str) -> list[int]:
    if split not in ("train", "val", "test"):
        raise EdgesegError(
            f"CelebAMask-HQ split '{split}': expected train, val or test (or provide {split}.txt)"
        )
    out = []
    for n, line in enumerate(mapping.read_text().splitlines()):
        cols = line.split()
        if not cols or not cols[0].isdigit():
            continue  # header line
        try:
            idx, orig = int(cols[0]), int(cols[1])
        except (IndexError, ValueError):
            raise EdgesegError(f"{mapping}:{n + 1}: expected 'idx orig_idx orig_file'") from None
        which = "test" if orig >= _TEST_START else "val" if orig >= _VAL_START else "train"
        if which == split:
            out.append(idx)
    return out


class CelebAMaskHQ(SegmentationDataset):
    """CelebAMask-HQ, 19 classes, at the annotation resolution (512×512).

    Args:
        root: the ``CelebAMask-HQ`` folder.
        split: ``train``, ``val``, ``test`` or the name of a ``<root>/<split>.txt`` index list.
            Defaults to ``"train"``.
        transform: see :class:`~edgeseg.data._base.SegmentationDataset`.
        seed: see :class:`~edgeseg.data._base.SegmentationDataset`.

    Raises:
        EdgesegError: a folder or the split definition is missing, or the split is empty.
    """

    class_names = CELEBAMASK_CLASSES
    palette = CELEBAMASK_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.root = Path(root)
        split = split or "train"
        for sub in (_IMAGES, _MASKS):
            if not (self.root / sub).is_dir():
                raise EdgesegError(f"{self.root / sub}: folder not found (is {root} a CelebAMask-HQ root?)")
        listing, mapping = self.root / f"{split}.txt", self.root / _MAPPING
        if listing.is_file():
            self.indices = _read_index_list(listing)
        elif mapping.is_file():
            self.indices = _official_split(mapping, split)
        else:
            raise EdgesegError(f"{mapping}: not found, and no split list {listing} either")
        if not self.indices:
            raise EdgesegError(f"{self.root}: CelebAMask-HQ split '{split}' is empty")

    def __len__(self) -> int:
        return len(self.indices)

    def part_files(self, index: int) -> list[tuple[int, Path]]:
        """``(class id, mask path)`` of every part annotated for sample ``index``, in paint order."""
        i = self.indices[index]
        folder = self.root / _MASKS / str(i // _PER_FOLDER)
        found = []
        for class_id, part in enumerate(CELEBAMASK_CLASSES[1:], start=1):
            path = folder / f"{i:05d}_{part}.png"
            if path.is_file():
                found.append((class_id, path))
        return found

    def read_sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.indices[index]
        image_path = self.root / _IMAGES / f"{i}.jpg"
        image = read_image(image_path)
        parts = self.part_files(index)
        if not parts:
            raise EdgesegError(f"{self.root / _MASKS / str(i // _PER_FOLDER)}: no part masks for image {i}")
        decoded = [(class_id, path, read_label_file(path)) for class_id, path in parts]
        mask: np.ndarray = np.zeros(decoded[0][2].shape, dtype=np.int64)
        for class_id, path, part in decoded:
            if part.shape != mask.shape:
                raise EdgesegError(
                    f"{path}: size {part.shape[1]}x{part.shape[0]} differs from the other parts"
                )
            mask[part != 0] = class_id
        h, w = mask.shape
        ih, iw = image.shape[:2]
        if ih * w != iw * h:
            raise EdgesegError(
                f"{image_path}: image size {iw}x{ih} does not have the aspect of its {w}x{h} masks"
            )
        if (ih, iw) != (h, w):
            image = np.array(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        return to_tensors(image, mask)
