"""Image files: the one suffix list, folder discovery and the one decoder to uint8 RGB.

Calibration sets and ``edgeseg validate --images`` read their pictures through :func:`read_image`,
and the ``folder`` dataset finds its images with :func:`find_images`, so an image means the same
file and the same pixels wherever it is used. (The datasets still decode through
``edgeseg.data._base.read_image`` until that module takes this one.) Decoding rules (Pillow):

* 8-bit files (grayscale, palette, RGB, RGBA, CMYK, ...) are converted to RGB; alpha is dropped.
* 16-bit single-channel files (PNG, TIFF; Pillow modes ``I;16*``) are scaled to 8 bits with
  ``round(v / 257)``, so 0 → 0 and 65535 → 255. Pillow's own conversion would clip every value
  above 255 to white. ``I`` (32-bit integer) images are read the same way when their values fit
  in 0..65535 and refused otherwise.
* 16-bit RGB(A) files are decoded by Pillow itself, which keeps each sample's high byte
  (``v >> 8``, at most one level below ``round(v / 257)``).
* Single-channel float files (TIFF, mode ``F``) with values in [0, 1] are scaled with
  ``round(v * 255)``. Any other range is refused with the file's name: guessing a scale (0..255?
  0..65535? a depth map?) would feed the network images it never saw.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgeseg.errors import EdgesegError

__all__ = ["IMAGE_SUFFIXES", "find_images", "read_image", "preprocess_image"]

#: File suffixes (lower case) that count as images everywhere in edgeseg.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def find_images(folder: str | os.PathLike[str], *, strict: bool = False) -> list[Path]:
    """The image files of ``folder``, or of its ``images/`` subfolder when it has one.

    Hidden files (``.name``) and subfolders are skipped; the result is sorted by file name.

    Args:
        folder: the folder to list.
        strict: refuse any other file instead of skipping it (a calibration folder must hold only
            images, so a stray file is a mistake, not noise). Defaults to False.

    Returns:
        The image paths, never empty.

    Raises:
        EdgesegError: the folder is missing, holds no image, or (``strict``) holds another file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgesegError(f"{folder}: image folder not found")
    root = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if strict and len(images) != len(files):
        stray = next(p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES)
        raise EdgesegError(f"{stray}: not an image file (this folder may only hold images: "
                           f"{', '.join(IMAGE_SUFFIXES)})")
    if not images:
        raise EdgesegError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _scale16(values: np.ndarray) -> np.ndarray:
    # (v + 128) // 257 equals round(v / 257) for integers: v / 257 never ends in exactly .5.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _gray_to_rgb8(im: Image.Image, path: str | os.PathLike[str]) -> np.ndarray | None:
    """uint8 gray of a 16-bit, 32-bit integer or float image; None for modes Pillow converts right."""
    if im.mode.startswith("I;16"):
        return _scale16(np.asarray(im))
    if im.mode == "I":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise EdgesegError(f"{path}: 32-bit integer image with values in [{values.min()}, "
                               f"{values.max()}]; only 0..65535 can be read (save it as an 8- or "
                               "16-bit image)")
        return _scale16(values)
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if values.size and not np.isfinite(values).all():
            raise EdgesegError(f"{path}: floating-point image holds NaN or infinite values")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise EdgesegError(f"{path}: floating-point image with values in [{values.min():.4g}, "
                               f"{values.max():.4g}]; only 0..1 floats can be read (save it as an 8- or "
                               "16-bit image, or scale it to 0..1)")
        return np.rint(values * 255.0).astype(np.uint8)
    return None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)`` by the rules in the module docstring.

    Args:
        path: the image file.

    Returns:
        A writable, C-contiguous uint8 array.

    Raises:
        EdgesegError: the file is missing, truncated, not an image, or a float / 32-bit image
            outside the range that can be read (the message names the file).
    """
    try:
        with Image.open(path) as im:
            gray = _gray_to_rgb8(im, path)
            if gray is None:
                return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise EdgesegError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # Pillow reports corrupt files as OSError, a few plugins as ValueError or SyntaxError.
        raise EdgesegError(f"{path}: unreadable image ({e})") from None
    return np.repeat(gray[:, :, None], 3, axis=2)


def preprocess_image(path: str | os.PathLike[str], transform: Callable[..., Any]) -> Any:
    """Read ``path`` and apply an evaluation transform: the network input of one image file.

    Args:
        path: the image file.
        transform: an ``(image, mask)`` transform such as
            :class:`edgeseg.data.transforms.EvalTransform` (a placeholder mask rides along unused).

    Returns:
        The transformed float32 ``(3, H, W)`` tensor.
    """
    import torch

    image = torch.from_numpy(read_image(path)).permute(2, 0, 1).float().div_(255.0)
    return transform(image, torch.zeros(image.shape[-2:], dtype=torch.int64))[0]
