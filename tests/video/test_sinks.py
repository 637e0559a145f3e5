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


def test_x264_preset_trades_speed_for_size(tmp_path: Path, decode_all: Decode) -> None:
    yy, xx = np.mgrid[0:96, 0:128]
    sizes = {}
    for preset in ("ultrafast", "veryfast"):
        out = tmp_path / f"{preset}.mp4"
        with VideoWriter(out, 128, 96, preset=preset) as writer:
            for i in range(12):
                writer.write(
                    np.stack([(xx * 3 + i * 5) % 256, (yy * 2 + xx) % 256, (xx ^ yy) % 256], -1).astype(
                        np.uint8
                    )
                )
        assert len(decode_all(out)[0]) == 12
        sizes[preset] = out.stat().st_size
    assert sizes["ultrafast"] > 1.2 * sizes["veryfast"]  # ultrafast drops CABAC and motion search
    with pytest.raises(EdgesegError, match="preset"):
        VideoWriter(tmp_path / "y.mp4", 64, 48, preset="warp")
    assert not (tmp_path / "y.mp4").exists()
