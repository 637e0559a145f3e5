"""Writing segmented frames to a video file with PyAV, finalised even on interruption.

The file is encoded into a hidden temporary beside the destination and renamed over it by
:meth:`VideoWriter.close`, which first flushes the encoder (its delayed B-frames) and writes the
container trailer (the MP4 ``moov`` index). A stream stopped by Ctrl-C therefore still leaves a
complete, playable file, and a crash never leaves a truncated one at the destination.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.stopping import writing

if TYPE_CHECKING:
    from av.video.stream import VideoStream

__all__ = ["VideoWriter", "pick_codec", "X264_PRESETS", "DEFAULT_PRESET"]

DEFAULT_FPS = Fraction(30)

#: x264 speed/size trade-offs, fastest first (x264's own names).
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
#: x264's default "medium" costs more CPU per frame than a small model's inference. On a CPU backend
#: every encoder millisecond is taken from inference, so the default is "superfast": encode CPU per
#: 512x1024 frame, measured on 2 cores, veryfast 12 ms, superfast 7 ms, ultrafast 5 ms, for 1x, 1.7x
#: and 3.8x the file size; the video pipeline ran at 0.93 of inference-only FPS with superfast and
#: 0.88 with veryfast (BENCHMARKS.md). Pass ``preset="veryfast"`` or slower for smaller files.
DEFAULT_PRESET = "superfast"


def pick_codec(width: int, height: int, codec: str | None = None) -> tuple[str, str]:
    """Encoder and pixel format for a frame size.

    H.264 (libx264) when this FFmpeg has it, else MPEG-4 part 2. 4:2:0 chroma needs even sizes in
    libx264, so odd sizes use 4:4:4 there, keeping the exact input size.

    Returns:
        ``(codec, pix_fmt)``.
    """
    import av

    if codec is None:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    if codec not in av.codecs_available:
        raise EdgesegError(f"video codec {codec!r} is not available in this FFmpeg build")
    odd = width % 2 or height % 2
    return codec, ("yuv444p" if codec == "libx264" and odd else "yuv420p")


class VideoWriter:
    """Encode RGB (or BGR) uint8 frames of one fixed size to a video file.

    Args:
        path: destination (``.mp4``, ``.mkv``, ``.avi``...; the container follows the extension).
        width: frame width.
        height: frame height.
        fps: frame rate to keep. Defaults to 30.
        codec: FFmpeg encoder name. Defaults to libx264, else mpeg4.
        color: channel order of the frames passed to :meth:`write`. Defaults to RGB.
        preset: x264 preset (one of :data:`X264_PRESETS`; ignored by other codecs). Defaults to
            :data:`DEFAULT_PRESET`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction | float | None = None,
        codec: str | None = None,
        color: str = "rgb",
        preset: str = DEFAULT_PRESET,
    ) -> None:
        if preset not in X264_PRESETS:
            raise EdgesegError(f"unknown x264 preset {preset!r}; choose one of {', '.join(X264_PRESETS)}")
        try:
            import av
        except ImportError:
            raise MissingDependencyError("av", "video", "video encoding") from None
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height = int(width), int(height)
        self.fps = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
        self.color = color
        self.frames_written = 0
        #: True once :meth:`close` has moved the complete file to ``path``.
        self.finalized = False
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        codec, pix_fmt = pick_codec(self.width, self.height, codec)
        try:
            self._container = av.open(os.fspath(self._tmp), mode="w")
        except (av.FFmpegError, ValueError) as e:
            raise EdgesegError(f"{self.path}: cannot write this container ({e})") from None
        self._in_flight = contextlib.ExitStack()  # a hard stop (second Ctrl-C) deletes the partial file
        self._in_flight.enter_context(writing(self._tmp))
        # add_stream's return type is a union over media kinds; a video codec gives a VideoStream.
        self._stream = cast("VideoStream", self._container.add_stream(codec, rate=self.fps))
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, pix_fmt
        if codec == "libx264":
            self._stream.options = {"preset": preset}
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``(height, width, 3)`` uint8 frame.

        Raises:
            EdgesegError: the frame's size differs from the stream's.
        """
        import av

        if frame.shape != (self.height, self.width, 3):
            raise EdgesegError(
                f"frame of shape {frame.shape} does not fit the {self.width}x{self.height} output"
            )
        vf = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(frame), format="bgr24" if self.color == "bgr" else "rgb24"
        )
        vf.pts = self.frames_written  # encoder time base is 1/fps: one tick per frame
        self._container.mux(self._stream.encode(vf))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, write the trailer and move the file into place (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._in_flight:
            try:
                self._container.mux(self._stream.encode(None))
                self._container.close()
            except BaseException:
                with contextlib.suppress(Exception):
                    self._container.close()
                self._tmp.unlink(missing_ok=True)
                raise
            os.replace(self._tmp, self.path)
        self.finalized = True

    def abort(self) -> None:
        """Discard the output (used when nothing was written)."""
        if not self._closed:
            self._closed = True
            with self._in_flight:
                with contextlib.suppress(Exception):
                    self._container.close()
                self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
