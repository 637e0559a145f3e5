"""Plain images/ + masks/ folder reader."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import load_dataset
from edgeseg.data.folder import read_classes_file
from edgeseg.errors import EdgesegError


def _pair(base: Path, stem: str, labels: np.ndarray, suffix: str = ".png") -> None:
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    h, w = labels.shape
    Image.new("RGB", (w, h), (1, 2, 3)).save(base / "images" / f"{stem}{suffix}")
    Image.fromarray(labels.astype(np.uint8)).save(base / "masks" / f"{stem}.png")


def test_whole_folder_with_classes_file(tmp_path):
    labels = np.array([[0, 1, 2], [2, 255, 0]])
    _pair(tmp_path, "b", labels, ".jpg")
    _pair(tmp_path, "a", np.zeros((2, 3), int))
    (tmp_path / "classes.txt").write_text(
        "# name R G B\nsky 0 0 255\ntraffic light 250 170 30\ngrass 0 255 0\n"
    )
    ds = load_dataset("folder", tmp_path)
    assert ds.class_names == ["sky", "traffic light", "grass"]
    assert ds.palette == [[0, 0, 255], [250, 170, 30], [0, 255, 0]]
    assert [p[0].name for p in ds.samples] == ["a.png", "b.jpg"]  # sorted by stem
    np.testing.assert_array_equal(ds[1][1].numpy(), labels)


def test_split_folders_split_lists_and_inferred_classes(tmp_path):
    _pair(tmp_path / "val", "x", np.array([[0, 4]]))
    ds = load_dataset("folder", tmp_path, "val")
    assert len(ds) == 1 and ds.num_classes == 5  # no classes.txt: largest id + 1
    assert ds.class_names[4] == "class4" and len(ds.palette) == 5
    _pair(tmp_path, "p", np.array([[1]]))
    _pair(tmp_path, "q", np.array([[1]]))
    (tmp_path / "train.txt").write_text("q\n")
    ds = load_dataset("folder", tmp_path, "train", num_classes=3)
    assert [p[0].stem for p in ds.samples] == ["q"] and ds.num_classes == 3


def test_errors(tmp_path):
    with pytest.raises(EdgesegError, match="folder not found"):
        load_dataset("folder", tmp_path / "missing")
    _pair(tmp_path, "a", np.array([[0, 1]]))
    with pytest.raises(EdgesegError, match="no split 'val'"):
        load_dataset("folder", tmp_path, "val")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(EdgesegError, match="lists 2 classes but num_classes=3"):
        load_dataset("folder", tmp_path, num_classes=3)
    Image.new("RGB", (2, 1)).save(tmp_path / "images" / "orphan.png")
    with pytest.raises(EdgesegError, match=r"orphan\.png"):
        load_dataset("folder", tmp_path)


def test_label_outside_classes_and_size_mismatch(tmp_path):
    _pair(tmp_path, "a", np.array([[0, 2]]))
    _pair(tmp_path, "b", np.array([[0, 1]]))
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "masks" / "b.png")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    ds = load_dataset("folder", tmp_path)
    with pytest.raises(EdgesegError, match=r"a\.png.*\{2\}.*\[0, 2\)"):
        ds[0]
    with pytest.raises(EdgesegError, match=r"b\.png.*2x2.*2x1"):
        ds[1]


def test_classes_file_rejects_bad_colour(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("road 1 2 300\n")
    with pytest.raises(EdgesegError, match="outside 0..255"):
        read_classes_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(EdgesegError, match="no class"):
        read_classes_file(path)
