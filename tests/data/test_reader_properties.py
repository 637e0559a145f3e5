"""Property-based tests of the readers of user files: images, masks, calibration manifests, model cards.

The common claim: whatever a user's file holds, a reader returns a well-formed value or raises one
:class:`EdgesegError`, never another exception (which the CLI would show as a traceback).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from edgeseg.checkpoint import ModelCard
from edgeseg.data._base import check_labels, read_label_file
from edgeseg.data.images import read_image
from edgeseg.errors import EdgesegError
from edgeseg.precision.calibration import Manifest, resolve_manifest

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
small = st.integers(1, 6)


def _save(array: np.ndarray, suffix: str, **kwargs: Any) -> Path:
    path = Path(tempfile.mkdtemp()) / f"x{suffix}"
    Image.fromarray(array, **kwargs).save(path)
    return path


def _write(data: bytes, suffix: str) -> Path:
    path = Path(tempfile.mkdtemp()) / f"x{suffix}"
    path.write_bytes(data)
    return path


# --- images ------------------------------------------------------------------------------------
@SETTINGS
@given(arrays(np.uint8, st.tuples(small, small, st.just(3))))
def test_8bit_rgb_round_trips(pixels: np.ndarray) -> None:
    np.testing.assert_array_equal(read_image(_save(pixels, ".png")), pixels)


@SETTINGS
@given(arrays(np.uint16, st.tuples(small, small)), st.sampled_from([".png", ".tif"]))
def test_16bit_gray_scales_by_257(values: np.ndarray, suffix: str) -> None:
    out = read_image(_save(values, suffix))
    assert out.dtype == np.uint8 and out.shape == (*values.shape, 3)
    np.testing.assert_array_equal(out[..., 0], np.rint(values / 257.0).astype(np.uint8))
    assert (out == out[..., :1]).all()


@SETTINGS
@given(arrays(np.float32, st.tuples(small, small),
              elements=st.floats(-2.0, 2.0, width=32) | st.sampled_from([np.nan, np.inf])))
def test_float_images_are_scaled_or_refused_by_name(values: np.ndarray) -> None:
    path = _save(values, ".tif")
    if np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0:
        np.testing.assert_array_equal(read_image(path)[..., 1], np.rint(values.astype(np.float64) * 255))
    else:
        with pytest.raises(EdgesegError, match=rf"{path}: floating-point image"):
            read_image(path)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"BM", b"\xff\xd8"]))
def test_arbitrary_bytes_give_an_rgb_image_or_one_error(data: bytes, magic: bytes) -> None:
    path = _write(magic + data, ".png")
    try:
        out = read_image(path)
    except EdgesegError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


@SETTINGS
@given(arrays(np.uint8, st.tuples(small, small, st.just(3))), st.integers(8, 200))
def test_truncated_png_never_escapes_as_another_exception(pixels: np.ndarray, keep: int) -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path = _write(buffer.getvalue()[:keep], ".png")
    try:
        np.testing.assert_array_equal(read_image(path), pixels)  # only when nothing was cut
    except EdgesegError as e:
        assert str(path) in str(e)


# --- masks -------------------------------------------------------------------------------------
@SETTINGS
@given(arrays(np.uint8, st.tuples(small, small)), st.booleans())
def test_gray_and_palette_masks_give_their_ids(ids: np.ndarray, palette: bool) -> None:
    image = Image.fromarray(ids)
    if palette:
        image = image.convert("P")  # no-op on values: an L image's values become palette indices
        image.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    path = Path(tempfile.mkdtemp()) / "m.png"
    image.save(path)
    out = read_label_file(path)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ids)


@SETTINGS
@given(arrays(np.uint8, st.tuples(small, small)), st.integers(1, 256))
def test_label_check_accepts_exactly_ids_below_k_and_ignore(ids: np.ndarray, num_classes: int) -> None:
    ok = bool(((ids < num_classes) | (ids == 255)).all())
    if ok:
        check_labels(ids.astype(np.int64), num_classes, "m.png")
    else:
        with pytest.raises(EdgesegError, match=rf"m\.png: label values .* outside \[0, {num_classes}\)"):
            check_labels(ids.astype(np.int64), num_classes, "m.png")


@SETTINGS
@given(arrays(np.uint8, st.tuples(small, small, st.just(3))))
def test_rgb_masks_are_refused(pixels: np.ndarray) -> None:
    with pytest.raises(EdgesegError, match="label image has mode RGB"):
        read_label_file(_save(pixels, ".png"))


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n"]))
def test_arbitrary_mask_bytes_give_ids_or_one_error(data: bytes, magic: bytes) -> None:
    path = _write(magic + data, ".png")
    try:
        out = read_label_file(path)
    except EdgesegError as e:
        assert str(path) in str(e)
    else:
        assert out.dtype == np.int64 and out.ndim == 2


# --- calibration manifests ---------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=False) | st.text(max_size=8)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=4), scalars, max_size=2)
field_names = st.sampled_from(["data", "files", "size", "seed", "val_data", "val_size", "description", "x"])


@SETTINGS
@given(st.dictionaries(field_names, values, max_size=5))
def test_manifest_gives_checked_fields_or_one_error(raw: dict[str, Any]) -> None:
    path = Path(tempfile.mkdtemp()) / "m.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        manifest = resolve_manifest(str(path))
    except EdgesegError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return
    assert isinstance(manifest, Manifest)
    assert bool(manifest.data) != bool(manifest.files)
    assert all(isinstance(f, str) for f in manifest.files)
    for count in (manifest.size, manifest.val_size):
        assert count is None or (type(count) is int and count >= 1)
    assert type(manifest.seed) is int and manifest.seed >= 0
    assert manifest.val_data is None or isinstance(manifest.val_data, str)
    assert isinstance(manifest.description, str)


@SETTINGS
@given(st.binary(max_size=120))
def test_manifest_of_arbitrary_bytes_is_refused_in_one_line(data: bytes) -> None:
    path = _write(data, ".yaml")
    try:
        resolve_manifest(str(path))
    except EdgesegError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)


# --- model cards -------------------------------------------------------------------------------
card_values = (scalars | st.lists(scalars | st.lists(st.integers(-1, 300), max_size=4), max_size=4)
               | st.dictionaries(st.text(max_size=4), scalars, max_size=2))
card_fields = st.sampled_from(["preset", "num_classes", "overrides", "class_names", "palette", "mean", "std",
                               "input_size", "ignore_index", "dataset", "metrics"])
plausible = st.fixed_dictionaries({"preset": st.just("dbmsnet_r18_os16"), "num_classes": st.integers(-1, 4)})


@SETTINGS
@given(plausible, st.dictionaries(card_fields, card_values, max_size=4))
def test_model_card_is_valid_or_one_error(base: dict[str, Any], extra: dict[str, Any]) -> None:
    try:
        card = ModelCard.from_dict({**base, **extra})
    except EdgesegError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(card.preset, str) and card.preset
    assert type(card.num_classes) is int and card.num_classes >= 1
    assert len(card.mean) == 3 and len(card.std) == 3 and all(s > 0 for s in card.std)
    assert len(card.input_size) == 2 and all(type(v) is int and v >= 1 for v in card.input_size)
    assert card.class_names == [] or len(card.class_names) == card.num_classes
