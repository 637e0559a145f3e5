"""Calibration sets: sources, model-card preprocessing, seeded sampling, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg.data.transforms import EvalTransform
from edgeseg.errors import EdgesegError
from edgeseg.precision.calibration import (
    CALIBRATION_DIR,
    DEFAULT_CALIB_SIZE,
    load_calibration_set,
    load_validation_set,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _write_images(folder: Path, n: int, size: tuple[int, int] = (20, 30)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _load(spec: str | Path, **kwargs: object):
    return load_calibration_set(str(spec), input_size=(16, 24), mean=MEAN, std=STD, **kwargs)


def test_folder_preprocessing_is_the_models_own(tmp_path: Path) -> None:
    paths = _write_images(tmp_path / "cal", 3, size=(40, 10))  # wrong size and aspect: resized
    cal = _load(tmp_path / "cal", size=None)
    assert cal.images.shape == (3, 3, 16, 24) and cal.images.dtype == np.float32
    assert cal.masks is None and cal.items == [str(p) for p in paths]
    pixels = torch.tensor(np.asarray(Image.open(paths[1]).convert("RGB"))).permute(2, 0, 1).float() / 255
    expected, _ = EvalTransform((16, 24), mean=MEAN, std=STD)(pixels, torch.zeros(40, 10, dtype=torch.int64))
    np.testing.assert_allclose(cal.images[1], expected.numpy(), atol=1e-6)


def test_sampling_is_seeded_and_hash_tracks_content(tmp_path: Path) -> None:
    _write_images(tmp_path / "cal", 10)
    a, b = _load(tmp_path / "cal", size=4), _load(tmp_path / "cal", size=4)
    assert a.items == b.items and len(a) == 4 and a.sha256 == b.sha256
    c = _load(tmp_path / "cal", size=4, seed=1)
    assert c.items != a.items and c.sha256 != a.sha256
    assert len(_load(tmp_path / "cal", size=50)) == 10  # more than available: all of them


def test_images_subfolder_and_manifest(tmp_path: Path) -> None:
    _write_images(tmp_path / "set" / "images", 4)
    assert len(_load(tmp_path / "set", size=None)) == 4
    manifest = tmp_path / "m.yaml"
    manifest.write_text("data: set\nsize: 2\nseed: 3\nval_data: synthetic::val\nval_size: 3\n")
    cal = _load(manifest, size=None)
    assert len(cal) == 2 and all("set/images" in item for item in cal.items)
    files = tmp_path / "f.yaml"
    files.write_text("files: [set/images/img00.png, set/images/img03.png]\n")
    assert [Path(i).name for i in _load(files, size=None).items] == ["img00.png", "img03.png"]
    val = load_validation_set(str(manifest), input_size=(16, 16), mean=MEAN, std=STD)
    assert val.images.shape == (3, 3, 16, 16) and val.masks is not None and val.masks.shape == (3, 16, 16)


def test_dataset_spec_has_masks() -> None:
    cal = _load("synthetic::val", size=3)
    assert cal.images.shape == (3, 3, 16, 24) and cal.masks.shape == (3, 16, 24) and cal.num_classes == 7


def test_shipped_demo_manifest() -> None:
    assert (CALIBRATION_DIR / "demo.yaml").is_file()
    cal = _load("demo", size=4)
    assert len(cal) == 4 and all("calibration/demo/images" in item for item in cal.items)


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesegError, match="no images"):
        _load(tmp_path / "empty")
    _write_images(tmp_path / "mixed", 2)
    (tmp_path / "mixed" / "notes.txt").write_text("hello")
    with pytest.raises(EdgesegError, match="notes.txt: not an image file"):
        _load(tmp_path / "mixed")
    _write_images(tmp_path / "broken", 2)
    (tmp_path / "broken" / "img01.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(EdgesegError, match="img01.png"):
        _load(tmp_path / "broken")
    with pytest.raises(EdgesegError, match="no such folder"):
        _load(tmp_path / "nowhere")
    (tmp_path / "bad.yaml").write_text("data: x\nbogus: 1\n")
    with pytest.raises(EdgesegError, match="unknown manifest fields"):
        _load(tmp_path / "bad.yaml")
    with pytest.raises(EdgesegError, match="needs labels"):
        load_validation_set(str(tmp_path / "mixed"), input_size=(16, 16), mean=MEAN, std=STD)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("data: set\nseed: abc\n", r"m\.yaml: manifest field 'seed' must be an integer >= 0, got 'abc'"),
        ("data: set\nval_size: -3\n", r"m\.yaml: manifest field 'val_size' must be an integer >= 1, got -3"),
        ("data: set\nsize: 0\n", r"manifest field 'size' must be an integer >= 1, got 0"),
        ("data: set\nsize: true\n", r"manifest field 'size' must be an integer >= 1, got True"),
        ("data: set\nsize: 2.5\n", r"manifest field 'size' must be an integer >= 1, got 2\.5"),
        ("data: 7\n", r"manifest field 'data' must be a string, got 7"),
        ("files: a.png\n", r"manifest field 'files' must be a list of image paths, got 'a\.png'"),
        ("files: [a.png, 3]\n", r"manifest field 'files' must be a list of image paths"),
        ("data: set\ndescription: [x]\n", r"manifest field 'description' must be a string"),
        ("data: set\nval_data: {a: 1}\n", r"manifest field 'val_data' must be a string"),
        ("data: set\n1: x\n", r"unknown manifest fields \['1'\]"),
        ("- data\n", "must be a mapping"),
        ("data: [unclosed\n", "not valid YAML"),
        ("size: 3\n", "exactly one of 'data'"),
    ],
)
def test_manifest_fields_are_type_and_range_checked(tmp_path: Path, text: str, match: str) -> None:
    _write_images(tmp_path / "set", 2)
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(EdgesegError, match=match):
        _load(tmp_path / "m.yaml")


def test_manifest_size_is_the_default_calib_size(tmp_path: Path) -> None:
    _write_images(tmp_path / "set", 40)
    (tmp_path / "m.yaml").write_text("data: set\nsize: 5\n")
    assert len(_load(tmp_path / "m.yaml")) == 5  # no size given: the manifest's
    assert len(_load(tmp_path / "m.yaml", size=3)) == 3  # an explicit size wins
    (tmp_path / "n.yaml").write_text("data: set\n")
    assert len(_load(tmp_path / "n.yaml")) == DEFAULT_CALIB_SIZE == 32
    assert len(_load(tmp_path / "set")) == 32
    with pytest.raises(EdgesegError, match="calibration size must be >= 1, got 0"):
        _load(tmp_path / "set", size=0)


def test_16bit_calibration_images_are_scaled_like_8bit_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gray8 = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(gray8).save(tmp_path / "a" / "x.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "b" / "x.png")  # same picture, 16-bit
    np.testing.assert_array_equal(_load(tmp_path / "a").images, _load(tmp_path / "b").images)
