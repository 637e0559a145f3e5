"""load_dataset / parse_spec and the per-sample augmentation seed."""

import pytest
import torch

from edgeseg.data import TrainTransform, load_dataset, parse_spec
from edgeseg.errors import EdgesegError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("voc:/data/VOCdevkit/VOC2012:val", ("voc", "/data/VOCdevkit/VOC2012", "val")),
        ("cityscapes:/data/cs", ("cityscapes", "/data/cs", None)),
        ("folder:C:/data:train", ("folder", "C:/data", "train")),
        ("folder:C:/data", ("folder", "C:/data", None)),
        ("folder:relative/dir:val", ("folder", "relative/dir", "val")),
        ("synthetic", ("synthetic", "", None)),
        ("synthetic::val", ("synthetic", "", "val")),
        ("CelebAMask:/d", ("celebamask", "/d", None)),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(("spec", "match"), [("coco:/x", "unknown kind 'coco'"), ("voc", "missing ROOT")])
def test_parse_spec_errors(spec, match):
    with pytest.raises(EdgesegError, match=match):
        parse_spec(spec)


def test_load_dataset_rejects_unknown_kind_and_option():
    with pytest.raises(EdgesegError, match="unknown dataset kind"):
        load_dataset("kitti", "/x")
    with pytest.raises(EdgesegError, match="crop"):
        load_dataset("synthetic", "", "train", crop=3)


def test_seeded_dataset_augments_reproducibly_per_epoch():
    kwargs = {"size": 32, "num_images": 4, "transform": TrainTransform(24), "seed": 7}
    a, b = load_dataset("synthetic", "", "train", **kwargs), load_dataset("synthetic", "", "train", **kwargs)
    x0, y0 = a[1]
    # Reading order does not matter: the draw depends on (seed, epoch, index) only.
    b[3]
    x1, y1 = b[1]
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    a.set_epoch(1)
    assert not torch.equal(a[1][0], x0)
    with pytest.raises(IndexError, match="index 4 out of range for a dataset of 4 samples"):
        a[4]
