"""The synthetic shapes generator: determinism, split disjointness, content, on-disk round trip."""

import hashlib

import numpy as np
import pytest
import torch

from edgeseg.data import load_dataset, write_synthetic
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, render_sample
from edgeseg.errors import EdgesegError


def _digest(image: np.ndarray, mask: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes() + mask.tobytes()).hexdigest()


def test_deterministic_per_seed_split_index():
    a = render_sample(0, "train", 5, (64, 80))
    b = render_sample(0, "train", 5, (64, 80))
    assert a[0].shape == (64, 80, 3) and a[1].shape == (64, 80)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert _digest(*a) != _digest(*render_sample(0, "train", 6, (64, 80)))
    assert _digest(*a) != _digest(*render_sample(1, "train", 5, (64, 80)))


def test_splits_are_disjoint():
    n = 40
    seen = {
        s: {_digest(*render_sample(0, s, i, (32, 32))) for i in range(n)} for s in ("train", "val", "calib")
    }
    assert all(len(v) == n for v in seen.values())
    assert (
        not (seen["train"] & seen["val"])
        and not (seen["train"] & seen["calib"])
        and not (seen["val"] & seen["calib"])
    )


def test_content_covers_all_classes_and_many_object_sizes():
    ds = load_dataset("synthetic", "", "val", size=96, num_images=30)
    assert len(ds) == 30 and ds.num_classes == len(SYNTHETIC_CLASSES) == len(ds.palette)
    masks = np.stack([ds.render(i)[1] for i in range(len(ds))])
    counts = np.bincount(masks.ravel(), minlength=ds.num_classes)
    assert (counts > 0).all(), counts
    assert 0.3 < counts[0] / masks.size < 0.95  # background dominates but objects are not rare
    # Per image and class, pixel areas span small objects (tens of px) to large ones (> 1000 px).
    areas = [int((m == c).sum()) for m in masks for c in range(1, ds.num_classes) if (m == c).any()]
    assert min(areas) < 60 and max(areas) > 1000


def test_dataset_yields_normalised_tensors():
    ds = load_dataset("synthetic", "", "train", size=(32, 48), num_images=3)
    image, mask = ds[2]
    assert image.shape == (3, 32, 48) and image.dtype == torch.float32
    assert mask.dtype == torch.int64 and int(mask.max()) < ds.num_classes
    assert image.min() < 0  # ImageNet-normalised, not 0..1


def test_write_synthetic_round_trips_through_folder_reader(tmp_path):
    root = write_synthetic(tmp_path / "calib", 3, size=40)
    ds = load_dataset("folder", root)
    ref = load_dataset("synthetic", "", "calib", size=40, num_images=3)
    assert ds.class_names == SYNTHETIC_CLASSES and ds.palette == ref.palette
    for i in range(3):
        for got, want in zip(ds.read_sample(i), ref.read_sample(i), strict=True):
            assert torch.equal(got, want)
    assert (root / "synthetic.json").is_file()


def test_bad_split_and_size():
    with pytest.raises(EdgesegError, match="split 'holdout'"):
        load_dataset("synthetic", "", "holdout")
    with pytest.raises(EdgesegError, match="too small"):
        load_dataset("synthetic", "", "train", size=8)
    with pytest.raises(EdgesegError, match="empty"):
        load_dataset("synthetic", "", "train", num_images=0)
