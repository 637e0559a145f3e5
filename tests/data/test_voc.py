"""Pascal VOC reader on a VOC2012 tree the test writes itself."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import load_dataset
from edgeseg.data._base import bit_palette
from edgeseg.data.voc import VOC_CLASSES
from edgeseg.errors import EdgesegError


def _palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels.astype(np.uint8)).convert("L")
    im = Image.frombytes("P", im.size, im.tobytes())
    im.putpalette([c for rgb in bit_palette(256) for c in rgb])
    im.save(path)


def _voc_tree(root: Path, ids: dict[str, np.ndarray], split: str = "train") -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, labels in ids.items():
        h, w = labels.shape
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            base / "JPEGImages" / f"{name}.jpg"
        )
        _palette_png(base / "SegmentationClass" / f"{name}.png", labels)
    (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return base


def _labels(h: int = 6, w: int = 9) -> np.ndarray:
    labels = np.arange(h * w).reshape(h, w) % 21
    labels[0, :] = labels[-1, :] = labels[:, 0] = labels[:, -1] = 255  # VOC's void border
    return labels


def test_palette_indices_decode_pixel_by_pixel(tmp_path):
    labels = _labels()
    _voc_tree(tmp_path, {"2007_000032": labels, "2007_000039": np.zeros((4, 5), int)})
    ds = load_dataset("voc", tmp_path, "train")  # root above VOCdevkit works too
    assert len(ds) == 2 and ds.num_classes == 21 and ds.class_names == VOC_CLASSES
    assert ds.palette[:3] == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # the standard VOC colour map
    image, mask = ds[0]
    assert image.shape == (3, 6, 9) and image.dtype.is_floating_point
    np.testing.assert_array_equal(mask.numpy(), labels)


def test_missing_split_and_folder_and_empty_split(tmp_path):
    base = _voc_tree(tmp_path, {"a": _labels()})
    with pytest.raises(EdgesegError, match="val.txt"):
        load_dataset("voc", base, "val")
    (base / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(EdgesegError, match="empty"):
        load_dataset("voc", base, "empty")
    with pytest.raises(EdgesegError, match="JPEGImages"):
        load_dataset("voc", tmp_path / "nowhere", "train")


def test_bad_label_wrong_size_corrupt_image_rgb_mask(tmp_path):
    bad = _labels()
    bad[2, 2] = 30  # neither a VOC class nor void
    base = _voc_tree(tmp_path, {"bad": bad, "small": _labels(), "corrupt": _labels(), "rgb": _labels()})
    _palette_png(base / "SegmentationClass" / "small.png", _labels(5, 9))
    (base / "JPEGImages" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (9, 6)).save(base / "SegmentationClass" / "rgb.png")
    ds = load_dataset("voc", base, "train")
    with pytest.raises(EdgesegError, match=r"bad\.png.*30"):
        ds[0]
    with pytest.raises(EdgesegError, match=r"small\.png.*size 9x5.*9x6"):
        ds[1]
    with pytest.raises(EdgesegError, match=r"corrupt\.jpg"):
        ds[2]
    with pytest.raises(EdgesegError, match=r"rgb\.png.*mode RGB"):
        ds[3]
