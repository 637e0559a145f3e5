"""Disjoint, seeded image sets: calibration, guard tuning and held-out evaluation.

The accuracy guard tunes the INT8 graph on one set of images; a figure measured on those same
images grades the guard on its own homework. So a build draws disjoint sets from what the user
gave and judges the deployed graph on the held-out one only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = ["MIN_HELDOUT", "MAX_DEFAULT_SET", "SET_PIXELS", "default_set_size", "split_indices"]

#: Below this many held-out images a build warns that its verdict rests on few pixels.
MIN_HELDOUT = 16
#: Pixels the tuning set and the held-out set each aim at when their size is not given: the gate
#: is an agreement over pixels, and one 512x1024 image holds as many as 32 demo-size (128x128) ones.
SET_PIXELS = 16 * 512 * 1024
#: The most images a default-sized set holds (small inputs).
MAX_DEFAULT_SET = 64


def default_set_size(input_size: tuple[int, int]) -> int:
    """Images per tuning / held-out set for an input of ``(H, W)`` when the user gave no size.

    As many as make :data:`SET_PIXELS`, between :data:`MIN_HELDOUT` and :data:`MAX_DEFAULT_SET`:
    64 at 128x128 to 256x512, 16 at 512x1024 (8.4 Mpx) and above. Every image of a set costs one
    run of each graph judged on it, so a fixed count would make a Cityscapes-size build 32 times the
    work of the demo for the same statistical footing.
    """
    h, w = input_size
    return max(MIN_HELDOUT, min(MAX_DEFAULT_SET, -(-SET_PIXELS // (h * w))))


def split_indices(n: int, sizes: Mapping[str, int], seed: int = 0) -> dict[str, list[int]]:
    """Disjoint subsets of ``range(n)``, drawn by one seeded permutation, each sorted.

    Sets are filled in the order of ``sizes``; when ``n`` is too small, the last sets get what is
    left (possibly nothing), so callers can say how many images each really has.

    Args:
        n: how many items there are.
        sizes: set name → wanted size (≥ 1).
        seed: the permutation's seed; the same seed gives the same sets.

    Raises:
        EdgesegError: a wanted size below 1.
    """
    for name, size in sizes.items():
        if size < 1:
            raise EdgesegError(f"{name} set size must be >= 1, got {size}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    out: dict[str, list[int]] = {}
    start = 0
    for name, size in sizes.items():
        out[name] = sorted(int(i) for i in order[start:start + size])
        start += len(out[name])
    return out
