"""CelebAMask-HQ reader: per-part masks combined in the official paint order."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import load_dataset
from edgeseg.data.celebamask import CELEBAMASK_CLASSES
from edgeseg.errors import EdgesegError

S = 8  # mask side; images are written at twice the size, like the real 1024 vs 512


def _part(root: Path, i: int, part: str, region: np.ndarray) -> None:
    folder = root / "CelebAMask-HQ-mask-anno" / str(i // 2000)
    folder.mkdir(parents=True, exist_ok=True)
    # The real files are 0/255 grayscale PNGs.
    Image.fromarray((region * 255).astype(np.uint8)).save(folder / f"{i:05d}_{part}.png")


def _image(root: Path, i: int, size: tuple[int, int] = (2 * S, 2 * S)) -> None:
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 150, 100)).save(root / "CelebA-HQ-img" / f"{i}.jpg")


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((S, S), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_parts_combine_with_later_parts_overwriting(tmp_path):
    i = 2001  # lives in annotation folder "1"
    _image(tmp_path, i)
    _part(tmp_path, i, "skin", _box(0, 6, 0, 8))
    _part(tmp_path, i, "nose", _box(2, 4, 3, 5))
    _part(tmp_path, i, "hair", _box(0, 2, 0, 8))  # over skin: hair wins (later in the order)
    _part(tmp_path, i, "neck", _box(5, 8, 2, 6))
    _part(tmp_path, i, "cloth", _box(7, 8, 0, 8))  # over neck: cloth wins
    (tmp_path / "train.txt").write_text(f"{i}\n")
    ds = load_dataset("celebamask", tmp_path, "train")
    assert ds.num_classes == 19 and len(ds.palette) == 19
    image, mask = ds[0]
    assert image.shape == (3, S, S)  # image resized to the mask size
    c = {name: k for k, name in enumerate(CELEBAMASK_CLASSES)}
    expected = np.zeros((S, S), dtype=np.int64)
    expected[0:6, :] = c["skin"]
    expected[2:4, 3:5] = c["nose"]
    expected[0:2, :] = c["hair"]
    expected[5:8, 2:6] = c["neck"]
    expected[7:8, :] = c["cloth"]
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_official_partition_from_mapping_file(tmp_path):
    (tmp_path / "CelebA-HQ-img").mkdir()
    (tmp_path / "CelebAMask-HQ-mask-anno").mkdir()
    rows = [(0, 100), (1, 162770), (2, 162771), (3, 182637), (4, 182638), (5, 200000)]
    text = "idx         orig_idx    orig_file\n" + "".join(f"{a} {b} {b + 1:06d}.jpg\n" for a, b in rows)
    (tmp_path / "CelebA-HQ-to-CelebA-mapping.txt").write_text(text)
    assert load_dataset("celebamask", tmp_path, "train").indices == [0, 1]
    assert load_dataset("celebamask", tmp_path, "val").indices == [2, 3]
    assert load_dataset("celebamask", tmp_path, "test").indices == [4, 5]
    with pytest.raises(EdgesegError, match="split 'extra'"):
        load_dataset("celebamask", tmp_path, "extra")


def test_errors_name_the_file(tmp_path):
    _image(tmp_path, 0)
    _part(tmp_path, 0, "skin", _box(0, 4, 0, 4))
    Image.new("L", (S, S + 1)).save(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00000_hair.png")
    _image(tmp_path, 1, size=(2 * S, 3 * S))
    _part(tmp_path, 1, "skin", _box(0, 4, 0, 4))
    _image(tmp_path, 2)
    (tmp_path / "val.txt").write_text("0 1 2\n")
    ds = load_dataset("celebamask", tmp_path, "val")
    with pytest.raises(EdgesegError, match=r"00000_hair\.png.*differs"):
        ds[0]
    with pytest.raises(EdgesegError, match=r"1\.jpg.*aspect"):
        ds[1]
    with pytest.raises(EdgesegError, match="no part masks for image 2"):
        ds[2]
    with pytest.raises(EdgesegError, match="CelebA-HQ-to-CelebA-mapping"):
        load_dataset("celebamask", tmp_path, "train")
