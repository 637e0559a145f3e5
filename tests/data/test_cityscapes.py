"""Cityscapes reader: raw labelIds → the 19 official train ids."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import load_dataset
from edgeseg.errors import EdgesegError

# The official evaluated classes as (labelId, trainId), written out independently of the reader.
OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def _write(root: Path, split: str, city: str, frame: str, label_ids: np.ndarray) -> None:
    img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    h, w = label_ids.shape
    Image.new("RGB", (w, h), (10, 20, 30)).save(img_dir / f"{city}_{frame}_leftImg8bit.png")
    Image.fromarray(label_ids.astype(np.uint8)).save(gt_dir / f"{city}_{frame}_gtFine_labelIds.png")


def test_every_label_id_maps_to_its_train_id_or_255(tmp_path):
    ids = np.array(list(range(34)) + [255, 0]).reshape(6, 6)
    _write(tmp_path, "val", "aachen", "000000_000019", ids)
    _write(tmp_path, "val", "bremen", "000001_000019", np.full((6, 6), 26))
    ds = load_dataset("cityscapes", tmp_path, "val")
    assert len(ds) == 2 and ds.num_classes == 19
    assert ds.class_names[0] == "road" and ds.class_names[18] == "bicycle"
    _, mask = ds[0]
    expected = np.vectorize(lambda v: OFFICIAL.get(int(v), 255))(ids)
    np.testing.assert_array_equal(mask.numpy(), expected)
    assert set(np.unique(mask.numpy())) == set(range(19)) | {255}
    assert (ds[1][1] == 13).all()  # car


def test_non_label_ids_and_missing_label_file(tmp_path):
    ids = np.full((4, 4), 7)
    ids[1, 1] = 40  # not a Cityscapes labelId: e.g. someone pointed at the wrong PNG
    _write(tmp_path, "train", "jena", "000000_000019", ids)
    with pytest.raises(EdgesegError, match=r"jena_000000_000019_gtFine_labelIds\.png.*40"):
        load_dataset("cityscapes", tmp_path, "train")[0]
    (tmp_path / "leftImg8bit" / "train" / "jena" / "jena_000002_000019_leftImg8bit.png").write_bytes(b"")
    with pytest.raises(EdgesegError, match=r"jena_000002_000019_gtFine_labelIds\.png"):
        load_dataset("cityscapes", tmp_path, "train")


def test_missing_split_folder(tmp_path):
    with pytest.raises(EdgesegError, match=r"leftImg8bit.test"):
        load_dataset("cityscapes", tmp_path, "test")
