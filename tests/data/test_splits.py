"""Disjoint seeded image sets for calibration, tuning and held-out evaluation."""

from __future__ import annotations

import pytest

from edgeseg.data.splits import MIN_HELDOUT, SET_PIXELS, default_set_size, split_indices
from edgeseg.errors import EdgesegError


def test_sets_are_disjoint_sorted_and_seeded() -> None:
    sets = split_indices(200, {"calibration": 32, "tuning": 64, "heldout": 64}, seed=0)
    assert [len(v) for v in sets.values()] == [32, 64, 64]
    flat = [i for v in sets.values() for i in v]
    assert len(set(flat)) == len(flat) and all(0 <= i < 200 for i in flat)
    assert all(v == sorted(v) for v in sets.values())
    assert split_indices(200, {"calibration": 32, "tuning": 64, "heldout": 64}, seed=0) == sets
    assert split_indices(200, {"calibration": 32, "tuning": 64, "heldout": 64}, seed=1) != sets
    # A seeded draw, not the first images.
    assert sets["tuning"] != list(range(32, 96))


def test_too_few_items_leave_the_last_sets_short() -> None:
    sets = split_indices(10, {"tuning": 8, "heldout": 8})
    assert len(sets["tuning"]) == 8 and len(sets["heldout"]) == 2
    assert not set(sets["tuning"]) & set(sets["heldout"])


def test_sizes_must_be_positive() -> None:
    with pytest.raises(EdgesegError, match="heldout set size must be >= 1, got 0"):
        split_indices(10, {"tuning": 4, "heldout": 0})


def test_default_set_size_follows_pixels_within_bounds() -> None:
    assert default_set_size((128, 128)) == 64  # the demo: capped
    assert default_set_size((512, 1024)) == 16  # Cityscapes half size: 8.4 Mpx
    assert default_set_size((1024, 2048)) == MIN_HELDOUT  # never fewer than the warning's floor
    n = default_set_size((384, 768))
    assert MIN_HELDOUT < n < 64 and (n - 1) * 384 * 768 < SET_PIXELS <= n * 384 * 768
