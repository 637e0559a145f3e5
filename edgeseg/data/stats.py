"""The preprocessing contract: do the frames look like the images the model was calibrated on?

A model card fixes channel order and value range; frames that break it (BGR fed to an RGB model,
0..1 values stored as uint8) still run and give plausible-looking garbage. The calibration images
are the model's "known good" input, so their per-channel statistics are recorded at build time
and later frames are compared with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PixelStats", "contract_warnings"]

# Red/blue means closer than this (0..255 units) say nothing about channel order.
_RB_MARGIN = 8.0


@dataclass(frozen=True)
class PixelStats:
    """Per-channel mean (RGB order) and the largest value of images, in 0..255 pixel units."""

    mean: tuple[float, float, float]
    max: float

    @classmethod
    def from_frames(cls, frames: Any) -> PixelStats:
        """From ``(N, H, W, 3)`` or ``(H, W, 3)`` RGB pixels (numpy or torch, any dtype)."""
        a = np.asarray(frames.cpu() if hasattr(frames, "cpu") else frames, dtype=np.float64).reshape(-1, 3)
        m = a.mean(0)
        return cls((float(m[0]), float(m[1]), float(m[2])), float(a.max()))

    @classmethod
    def from_normalised(cls, images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> PixelStats:
        """From ``(N, 3, H, W)`` network inputs, undoing ``(pixel / 255 - mean) / std``."""
        m, s = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        total, top, count = np.zeros(3), -np.inf, 0
        for image in images:  # one image at a time: no full-size copy of a large set
            flat = np.asarray(image).reshape(3, -1)
            total += flat.sum(1, dtype=np.float64)
            top = max(top, float(((flat.max(1) * s + m) * 255.0).max()))
            count += flat.shape[1]
        mu = (total / max(count, 1) * s + m) * 255.0
        return cls((float(mu[0]), float(mu[1]), float(mu[2])), top)

    def to_dict(self) -> dict[str, Any]:
        return {"mean_rgb": [round(v, 2) for v in self.mean], "max": round(self.max, 2)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PixelStats:
        r, g, b = (float(v) for v in d["mean_rgb"])
        return cls((r, g, b), float(d["max"]))


def contract_warnings(seen: PixelStats, expected: PixelStats, what: str) -> list[str]:
    """What about ``seen`` contradicts the calibration images' ``expected`` statistics.

    Args:
        seen: statistics of the frames being fed.
        expected: statistics of the calibration images (build.json ``input_stats``).
        what: how the message names the frames ("the frames", "--images photos/").
    """
    out = []
    if expected.max > 2.0 and seen.max <= 1.0:
        out.append(f"{what} hold values in 0..1, but the model was calibrated on 0..255 pixels "
                   f"(max {expected.max:.0f}): scale them by 255")
    rb_expected = expected.mean[0] - expected.mean[2]
    rb_seen = seen.mean[0] - seen.mean[2]
    if abs(rb_expected) > _RB_MARGIN and abs(rb_seen) > _RB_MARGIN and rb_seen * rb_expected < 0:
        out.append(f"{what} look BGR: their red/blue means ({seen.mean[0]:.0f}/{seen.mean[2]:.0f}) are "
                   "swapped against the calibration images' "
                   f"({expected.mean[0]:.0f}/{expected.mean[2]:.0f}); pass color='bgr' / convert to RGB")
    return out
