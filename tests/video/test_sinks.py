"""VideoWriter: exact size and frame rate kept (odd sizes too), atomic output, size checks."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.video import VideoWriter

Decode = Callable[[Path], tuple[list[np.ndarray], Fraction | None]]


@pytest.mark.parametrize(("h", "w"), [(95, 127), (64, 96)])
def test_sizes_and_ntsc_rate_are_kept(tmp_path: Path, decode_all: Decode, h: int, w: int) -> None:
    out = tmp_path / f"{h}x{w}.mp4"
    writer = VideoWriter(out, w, h, fps=Fraction(30000, 1001))
    for i in range(5):
        writer.write(np.full((h, w, 3), 40 * i, np.uint8))
    assert not out.exists()  # written to a hidden temporary until closed
    writer.close()
    frames, rate = decode_all(out)
    assert len(frames) == 5 and frames[0].shape == (h, w, 3) and rate == Fraction(30000, 1001)
    assert abs(int(frames[4].mean()) - 160) <= 3  # content survives (lossy codec)


def test_wrong_frame_size_and_abort(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "x.mp4", 64, 48)
    with pytest.raises(EdgesegError, match="does not fit"):
        writer.write(np.zeros((48, 65, 3), np.uint8))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
