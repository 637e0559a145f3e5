"""The dataset base class every reader shares, and the checked image / label-file readers.

A dataset yields ``(image, mask)``: image float32 (3, H, W) normalised by its transform, mask
int64 (H, W) of class ids with 255 = ignore. Readers only decide *which* files form a split and how
a label file decodes to class ids; reading, checking and transforming live here once.

Bad data is reported lazily, when a sample is read (scanning every file of Cityscapes up front
would take minutes), as an :class:`~edgeseg.errors.EdgesegError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgeseg.data.images import read_image
from edgeseg.data.transforms import IGNORE_INDEX, EvalTransform
from edgeseg.errors import EdgesegError

__all__ = [
    "IGNORE_INDEX",
    "SegmentationDataset",
    "FileSegmentationDataset",
    "Transform",
    "read_image",
    "read_label_file",
    "check_labels",
    "bit_palette",
    "to_tensors",
]

# (image float (3,H,W) 0..1, mask int64 (H,W), generator) -> (image, mask)
Transform = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def read_label_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a single-channel label PNG to its raw integer values (H, W).

    Palette ("P") images give their palette *indices*, not colours, which is how Pascal VOC stores
    class ids. RGB label images are refused: their colours would need a palette lookup that the
    dataset cannot guess.

    Raises:
        EdgesegError: the file is missing, unreadable or not single-channel.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16", "1"):
                raise EdgesegError(
                    f"{path}: label image has mode {im.mode}; expected a single-channel (palette or "
                    "grayscale) PNG of class ids"
                )
            return np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: label file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise EdgesegError(f"{path}: unreadable label image ({e})") from None


def check_labels(mask: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> None:
    """Refuse ids outside ``[0, num_classes) ∪ {255}``, naming the file and the offending ids."""
    ids = np.unique(mask)
    bad = ids[((ids < 0) | (ids >= num_classes)) & (ids != IGNORE_INDEX)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8])
        raise EdgesegError(
            f"{path}: label values {{{shown}}} outside [0, {num_classes}) and not {IGNORE_INDEX} (ignore)"
        )


def bit_palette(n: int) -> list[list[int]]:
    """The Pascal VOC colour map: class i's bits spread over the high bits of R, G and B.

    Distinct, stable colours for any number of classes (up to 256); used by VOC itself and as the
    default for datasets that bring no palette.
    """
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out.append([r, g, b])
    return out


class SegmentationDataset(torch.utils.data.Dataset):
    """Base of all datasets: sample reading + transform + reproducible per-sample randomness.

    Subclasses set ``class_names`` and ``palette`` and implement ``__len__`` and
    :meth:`read_sample`.

    Randomness: with ``seed=None`` the transform draws from torch's global RNG, which a
    ``DataLoader`` seeds per worker (deterministic when the loader has a seeded ``generator``).
    With an integer ``seed``, every sample gets its own generator seeded from
    ``(seed, epoch, index)``, so augmentation is identical whatever the number of workers or the
    order of reading; call :meth:`set_epoch` before each epoch to get fresh augmentation.

    Args:
        transform: ``transform(image, mask, generator=...)`` applied to every sample. Defaults to
            :class:`edgeseg.data.transforms.EvalTransform` (keep size, ImageNet normalisation).
        seed: base seed of per-sample augmentation; ``None`` uses the global RNG.
    """

    class_names: list[str]
    palette: list[list[int]]

    def __init__(self, *, transform: Transform | None = None, seed: int | None = None) -> None:
        self.transform: Transform = transform if transform is not None else EvalTransform()
        self.seed = seed
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        """Number of classes (ids ``0 .. num_classes-1``; 255 is ignore)."""
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws :meth:`__getitem__` makes (with ``seed``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        raise NotImplementedError

    def read_sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The untransformed sample: image float32 (3, H, W) in 0..1, mask int64 (H, W)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        image, mask = self.read_sample(index)
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
            )
        return self.transform(image, mask, generator=generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes)"


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (H, W, 3) image and (H, W) ids → float32 (3, H, W) in 0..1 and int64 (H, W)."""
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return img, torch.from_numpy(np.ascontiguousarray(mask)).to(torch.int64)


class FileSegmentationDataset(SegmentationDataset):
    """A dataset of ``(image file, label file)`` pairs; subclasses fill ``samples``.

    Subclasses override :meth:`decode_labels` when the file's raw values are not the class ids
    (Cityscapes labelIds).

    Args:
        samples: ``(image path, label path)`` pairs; must not be empty.
        what: description used in the empty-split error, e.g. ``"VOC split 'val' in /data/voc"``.
        transform: see :class:`SegmentationDataset`.
        seed: see :class:`SegmentationDataset`.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        what: str,
        *,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        if not samples:
            raise EdgesegError(f"{what}: the split is empty (no image/label pairs found)")
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def decode_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map a label file's raw values to class ids (identity by default), then check them."""
        check_labels(raw, self.num_classes, path)
        return raw

    def read_sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        mask = self.decode_labels(read_label_file(label_path), label_path)
        if mask.shape != image.shape[:2]:
            raise EdgesegError(
                f"{label_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from image "
                f"{image_path.name} size {image.shape[1]}x{image.shape[0]}"
            )
        return to_tensors(image, mask)
