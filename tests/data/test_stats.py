"""The preprocessing contract: frames compared with the calibration images' statistics."""

from __future__ import annotations

import numpy as np

from edgeseg.data.stats import PixelStats, contract_warnings

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _frames() -> np.ndarray:
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 40  # reddish
    return frames


def test_stats_survive_normalisation_and_json() -> None:
    frames = _frames()
    x = ((frames / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(0, 3, 1, 2).astype(np.float32)
    stats = PixelStats.from_normalised(x, MEAN, STD)
    np.testing.assert_allclose(stats.mean, (200, 100, 40), atol=1e-3)
    assert abs(stats.max - 200) < 1e-3
    assert PixelStats.from_dict(stats.to_dict()).mean == tuple(round(v, 2) for v in stats.mean)


def test_bgr_and_unit_range_frames_are_named() -> None:
    expected = PixelStats.from_frames(_frames())
    assert contract_warnings(PixelStats.from_frames(_frames()), expected, "the frames") == []
    (bgr,) = contract_warnings(PixelStats.from_frames(_frames()[..., ::-1]), expected, "the frames")
    assert "look BGR" in bgr
    (unit,) = contract_warnings(PixelStats.from_frames(_frames() / 255.0), expected, "the frames")
    assert "values in 0..1" in unit
    # Grey images carry no channel-order signal: nothing is claimed.
    grey = np.full((1, 4, 4, 3), 120, np.uint8)
    assert contract_warnings(PixelStats.from_frames(grey), expected, "x") == []
