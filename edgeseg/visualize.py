"""The validation picture: per image, input | reference | each candidate | where each one disagrees."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from edgeseg._io import atomic_write

__all__ = [
    "GridRow",
    "save_comparison_grid",
    "tile_size",
    "to_display_image",
    "HEADER_HEIGHT",
    "MIN_TILE",
    "MAX_TILE",
]

#: Height in pixels of the caption band above the tiles.
HEADER_HEIGHT = 14
#: Tiles larger than this (longer side) are scaled down, keeping the aspect ratio.
MAX_TILE = 256
#: Tiles smaller than this (longer side) are enlarged by a whole factor, so pixels stay crisp squares.
MIN_TILE = 96
_DISAGREE = np.array([255, 0, 0], np.uint8)


@dataclass
class GridRow:
    """One validation image.

    Attributes:
        image: the network input as RGB uint8 (H, W, 3), i.e. after resizing, before normalising.
        reference: reference class map (H, W).
        candidates: one class map (H, W) per candidate, in column order.
    """

    image: np.ndarray
    reference: np.ndarray
    candidates: list[np.ndarray]


def _disagreement(image: np.ndarray, reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    # Dimmed grey input for context; differing pixels in pure red so a single one stands out.
    grey = (image.astype(np.float32).mean(-1, keepdims=True) * 0.4).astype(np.uint8).repeat(3, -1)
    grey[reference != other] = _DISAGREE
    return grey


def tile_size(height: int, width: int) -> tuple[int, int]:
    """Tile (H, W) for an input of ``height`` × ``width``.

    Unchanged between :data:`MIN_TILE` and :data:`MAX_TILE`; larger inputs are scaled down to
    ``MAX_TILE``, smaller ones enlarged by the whole factor that brings them to at least ``MIN_TILE``.
    """
    longest = max(height, width)
    if longest < MIN_TILE:
        factor = math.ceil(MIN_TILE / longest)
        return height * factor, width * factor
    scale = min(1.0, MAX_TILE / longest)
    return max(1, round(height * scale)), max(1, round(width * scale))


def save_comparison_grid(
    path: str | os.PathLike[str],
    rows: Sequence[GridRow],
    candidate_names: Sequence[str],
    palette: Sequence[Sequence[int]],
) -> tuple[int, int]:
    """Write the comparison grid as a PNG (atomically).

    Columns: input, reference, each candidate's class map, then each candidate's disagreement map
    (pixels whose class differs from the reference in red over the dimmed input). Colours come from
    the model card's palette. Each column is captioned.

    Args:
        path: destination ``.png``.
        rows: the images to show, all of the same size.
        candidate_names: one caption per candidate.
        palette: RGB triple per class.

    Returns:
        ``(width, height)`` of the written image:
        ``(2 + 2 * len(candidate_names)) * tile_w`` by ``HEADER_HEIGHT + len(rows) * tile_h``.
    """
    from edgeseg.runtime.processing import Colorizer

    colorizer = Colorizer(palette)

    def colorize(labels: np.ndarray) -> np.ndarray:
        return colorizer.colorize(torch.from_numpy(np.ascontiguousarray(labels))).numpy()

    height, width = rows[0].reference.shape
    th, tw = tile_size(height, width)
    captions = ["input", "reference", *candidate_names, *(f"diff {n}" for n in candidate_names)]
    canvas = Image.new("RGB", (len(captions) * tw, HEADER_HEIGHT + len(rows) * th), "white")
    draw = ImageDraw.Draw(canvas)
    for col, caption in enumerate(captions):
        # Captions are clipped to their tile: long artifact names must not spill into neighbours.
        text = caption if len(caption) * 6 <= tw else caption[: max(1, tw // 6 - 1)] + "…"
        draw.text((col * tw + 2, 1), text, fill="black")
    for r, row in enumerate(rows):
        tiles = [row.image, colorize(row.reference)]
        tiles += [colorize(c) for c in row.candidates]
        tiles += [_disagreement(row.image, row.reference, c) for c in row.candidates]
        for col, tile in enumerate(tiles):
            im = Image.fromarray(np.ascontiguousarray(tile))
            if im.size != (tw, th):
                im = im.resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(im, (col * tw, HEADER_HEIGHT + r * th))
    with atomic_write(path) as f:
        canvas.save(f, format="PNG")
    return canvas.size


def to_display_image(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo normalisation of a (3, H, W) network input → RGB uint8 (H, W, 3)."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    rgb = (x.float().cpu() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).numpy()
