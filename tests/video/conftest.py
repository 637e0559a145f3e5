"""A short generated clip and a CPU Segmenter for the video tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from edgeseg import Segmenter

CLIP_FRAMES, CLIP_H, CLIP_W, CLIP_FPS = 24, 96, 128, Fraction(25)


def _synthetic_frames(n: int = CLIP_FRAMES, h: int = CLIP_H, w: int = CLIP_W) -> list[np.ndarray]:
    """Moving colour gradients: every frame differs, so a reordering would show in the masks."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        r = (xx * 2 + i * 9) % 256
        g = (yy * 3 + i * 5) % 256
        b = ((xx + yy) + i * 13) % 256
        frames.append(np.stack([r, g, b], axis=-1).astype(np.uint8))
    return frames


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 frames, 96x128, 25 fps, written with PyAV directly (independent of edgeseg's writer)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = CLIP_W, CLIP_H, "yuv420p"
        for frame in _synthetic_frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def seg(rt_build: Path) -> Iterator[Segmenter]:
    with Segmenter.load(rt_build, backend="onnxruntime") as s:
        yield s


@pytest.fixture(scope="session")
def clip_frames() -> list[np.ndarray]:
    """The clip's frames before encoding (a lossless in-memory source)."""
    return _synthetic_frames()


def _decode_all(path: Path) -> tuple[list[np.ndarray], Fraction | None]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate


@pytest.fixture(scope="session")
def decode_all() -> Callable[[Path], tuple[list[np.ndarray], Fraction | None]]:
    """Function: every frame of a video file (RGB) and its stream's average rate."""
    return _decode_all
