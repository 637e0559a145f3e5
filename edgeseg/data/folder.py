"""A plain folder of images and label PNGs paired by file stem.

Layouts, tried in this order for ``split``::

    <root>/<split>/images/<stem>.<ext>   <root>/<split>/masks/<stem>.png     (per-split folders)
    <root>/<split>.txt + <root>/images/, <root>/masks/                       (stems listed per split)
    <root>/images/, <root>/masks/                                            (split=None: everything)

Masks are single-channel PNGs of class ids (palette or grayscale), 255 = ignore.

Classes come from an optional ``classes.txt`` (beside ``images/`` or in ``root``): one class per
line, ``name`` or ``name R G B``; ``#`` starts a comment. Without it, ``num_classes`` must be
given or is inferred as the largest id found in the masks + 1 (reads every mask once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data._base import IGNORE_INDEX, FileSegmentationDataset, Transform, bit_palette, read_label_file
from edgeseg.data.images import find_images
from edgeseg.errors import EdgesegError

__all__ = ["FolderDataset", "read_classes_file"]


def read_classes_file(path: Path) -> tuple[list[str], list[list[int]] | None]:
    """Parse a ``classes.txt``: returns the names and, if every line has one, the palette.

    A line ending in three integers is ``name R G B``; anything else is a bare name.

    Raises:
        EdgesegError: a colour is outside 0..255, or the file lists no class.
    """
    names: list[str] = []
    colors: list[list[int]] = []
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        tail = parts[-3:] if len(parts) >= 4 else []
        if tail and all(t.isdigit() for t in tail):
            rgb = [int(t) for t in tail]
            if max(rgb) > 255:
                raise EdgesegError(f"{path}:{n}: colour {rgb} outside 0..255")
            names.append(" ".join(parts[:-3]))
            colors.append(rgb)
        else:
            names.append(line)
    if not names:
        raise EdgesegError(f"{path}: lists no class")
    return names, (colors if len(colors) == len(names) else None)


def _pairs(image_dir: Path, mask_dir: Path, stems: list[str] | None) -> list[tuple[Path, Path]]:
    for d in (image_dir, mask_dir):
        if not d.is_dir():
            raise EdgesegError(f"{d}: folder not found")
    images = {p.stem: p for p in find_images(image_dir)}
    wanted = sorted(images) if stems is None else stems
    pairs = []
    for stem in wanted:
        if stem not in images:
            raise EdgesegError(f"{image_dir}: no image named '{stem}' (listed in the split)")
        mask = mask_dir / f"{stem}.png"
        if not mask.is_file():
            raise EdgesegError(f"{mask}: label file not found for image {images[stem]}")
        pairs.append((images[stem], mask))
    return pairs


class FolderDataset(FileSegmentationDataset):
    """Images and masks paired by stem; see the module docstring for the accepted layouts.

    Args:
        root: the dataset folder.
        split: split name, or ``None`` for the whole ``images/`` folder. Defaults to ``None``.
        num_classes: number of classes when there is no ``classes.txt``; inferred from the masks
            when ``None``.
        transform: see :class:`~edgeseg.data._base.SegmentationDataset`.
        seed: see :class:`~edgeseg.data._base.SegmentationDataset`.

    Raises:
        EdgesegError: a folder, image or mask is missing, the split is unknown or empty, or
            ``classes.txt`` disagrees with ``num_classes``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        num_classes: int | None = None,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise EdgesegError(f"{root}: folder not found")
        base, stems = root, None
        if split is not None:
            if (root / split / "images").is_dir():
                base = root / split
            elif (root / f"{split}.txt").is_file():
                stems = (root / f"{split}.txt").read_text().split()
            else:
                raise EdgesegError(
                    f"{root}: no split '{split}' (expected {root / split / 'images'} or {root / split}.txt)"
                )
        samples = _pairs(base / "images", base / "masks", stems)
        super().__init__(samples, f"{base}", transform=transform, seed=seed)

        classes_file = next((p for p in (base / "classes.txt", root / "classes.txt") if p.is_file()), None)
        palette: list[list[int]] | None = None
        if classes_file is not None:
            names, palette = read_classes_file(classes_file)
            if num_classes is not None and num_classes != len(names):
                raise EdgesegError(
                    f"{classes_file}: lists {len(names)} classes but num_classes={num_classes}"
                )
        else:
            if num_classes is None:
                num_classes = self._infer_num_classes()
            names = [f"class{i}" for i in range(num_classes)]
        self.class_names = names
        self.palette = palette if palette is not None else bit_palette(len(names))

    def _infer_num_classes(self) -> int:
        top = -1
        for _, mask_path in self.samples:
            ids = np.unique(read_label_file(mask_path))
            ids = ids[ids != IGNORE_INDEX]
            if ids.size:
                top = max(top, int(ids.max()))
        if top < 0:
            raise EdgesegError(f"{self.samples[0][1].parent}: masks hold no class ids; pass num_classes")
        return top + 1
