"""The one image reader and folder discovery: 8/16-bit and float files, suffixes, stray files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data.images import IMAGE_SUFFIXES, find_images, preprocess_image, read_image
from edgeseg.data.transforms import EvalTransform
from edgeseg.errors import EdgesegError


def _png16_rgb(path: Path, values: np.ndarray) -> None:
    """Write a 16-bit RGB PNG by hand (Pillow cannot write one)."""
    h, w, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_8bit_modes_become_rgb(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    Image.fromarray(np.dstack([rgb, np.zeros((2, 3), np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
    gray = np.array([[0, 128, 255]], np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.dtype == np.uint8 and out.shape == (1, 3, 3) and out.flags.writeable
    np.testing.assert_array_equal(out[..., 1], gray)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / f"g{suffix}")
    with Image.open(tmp_path / f"g{suffix}") as im:
        assert im.mode.startswith("I;16")  # the case Pillow's convert("RGB") clips to 255
    out = read_image(tmp_path / f"g{suffix}")
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 128, 255]  # round(v / 257)
    assert (out[..., 0] == out[..., 2]).all()


def test_16bit_rgb_keeps_pillows_high_byte(tmp_path: Path) -> None:
    values = np.array([[[0, 257, 65535], [32896, 1000, 65280]]], np.uint16)
    _png16_rgb(tmp_path / "c.png", values)
    out = read_image(tmp_path / "c.png")
    np.testing.assert_array_equal(out, values >> 8)
    assert np.abs(out.astype(int) - np.rint(values / 257)).max() <= 1


def test_float_images_in_0_1_are_scaled_others_refused(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[0.0, 3.5]], np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(EdgesegError, match=r"hdr\.tif: floating-point image with values in \[0, 3\.5\]"):
        read_image(tmp_path / "hdr.tif")
    Image.fromarray(np.array([[0.0, np.nan]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(EdgesegError, match=r"nan\.tif: floating-point image holds NaN"):
        read_image(tmp_path / "nan.tif")


def test_32bit_integer_images(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "ok.tif")
    assert read_image(tmp_path / "ok.tif")[0, :, 0].tolist() == [0, 255]
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(EdgesegError, match=r"big\.tif: 32-bit integer image .*\[0, 70000\]"):
        read_image(tmp_path / "big.tif")


def test_missing_and_broken_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match=r"nope\.png: image file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(EdgesegError, match=r"bad\.png: unreadable image"):
        read_image(tmp_path / "bad.png")


def test_preprocess_image_is_read_then_transform(tmp_path: Path) -> None:
    import torch

    Image.fromarray(np.full((4, 6, 3), 51, np.uint8)).save(tmp_path / "x.png")
    x = preprocess_image(tmp_path / "x.png", EvalTransform((2, 3), mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5)))
    assert tuple(x.shape) == (3, 2, 3) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [(0.2 - m) / 0.5 for m in (0.1, 0.2, 0.3)], atol=1e-6)


def test_find_images_subfolder_order_hidden_and_strict(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", ".hidden.png", "notes.txt"):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / name).write_bytes(b"")
    (tmp_path / "images" / "sub.png").mkdir()  # a folder is never an image
    assert [p.name for p in find_images(tmp_path)] == ["a.png", "b.JPG"]  # images/ used, sorted
    with pytest.raises(EdgesegError, match=r"notes\.txt: not an image file"):
        find_images(tmp_path, strict=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesegError, match=r"empty: no images \(\.png"):
        find_images(tmp_path / "empty")
    with pytest.raises(EdgesegError, match="image folder not found"):
        find_images(tmp_path / "missing")
    assert ".tif" in IMAGE_SUFFIXES and all(s == s.lower() for s in IMAGE_SUFFIXES)
