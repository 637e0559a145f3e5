"""Where frames come from: video files, live URLs/cameras (PyAV), or any iterable of arrays.

A source yields either a frame (``HxWx3`` uint8 array) or a :class:`CorruptFrame` marker; the
pipeline counts markers as skipped frames and keeps going, so one undecodable packet never ends a
stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError

__all__ = ["CorruptFrame", "FrameSource", "VideoSource", "IterableSource", "open_source", "is_live_url"]

_LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://", "http://", "https://")

# A source that fails this many times in a row is dead, not corrupt: stop instead of spinning.
MAX_CONSECUTIVE_ERRORS = 100


@dataclass(frozen=True)
class CorruptFrame:
    """Marker for a frame that could not be decoded or read; ``reason`` is shown in the warning."""

    reason: str


class FrameSource:
    """Base of all sources.

    Attributes:
        live: a live stream (camera, RTSP): the pipeline drops the oldest frame when it falls
            behind instead of buffering without bound.
        fps: nominal frame rate, when known (kept by the encoder).
        color: channel order of the frames produced (``"rgb"`` or ``"bgr"``).
        name: label for messages.
    """

    live: bool = False
    fps: Fraction | None = None
    color: str = "rgb"
    name: str = "frames"

    def frames(self) -> Iterator[Any]:
        """Yield frames (arrays) or :class:`CorruptFrame` markers, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the input (file, socket, device)."""


def is_live_url(text: str) -> bool:
    """True for network stream URLs and V4L2 camera devices."""
    return text.lower().startswith(_LIVE_PREFIXES) or text.startswith("/dev/video")


class VideoSource(FrameSource):
    """Decode a video file, URL or camera with PyAV (FFmpeg), as RGB frames.

    Args:
        target: a file path, a URL (``rtsp://...``) or a V4L2 device (``/dev/video0``).
        live: treat as a live stream. Defaults to :func:`is_live_url` of ``target``.
    """

    def __init__(self, target: str | os.PathLike[str], live: bool | None = None) -> None:
        try:
            import av
        except ImportError:
            raise MissingDependencyError("av", "video", "video decoding") from None
        text = os.fspath(target)
        self.name = text
        self.live = is_live_url(text) if live is None else live
        if not self.live and not Path(text).is_file():
            raise EdgesegError(f"{text}: video file not found")
        options: dict[str, str] = {}
        fmt = None
        if text.startswith("/dev/video"):
            fmt = "v4l2"
        elif text.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"  # UDP loses packets on busy networks: smeared frames
        try:
            self._container = av.open(text, format=fmt, options=options, timeout=10.0 if self.live else None)
        except av.FFmpegError as e:
            raise EdgesegError(f"{text}: cannot open video ({e})") from None
        if not self._container.streams.video:
            self._container.close()
            raise EdgesegError(f"{text}: has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg's decoder
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = Fraction(rate) if rate else None
        self.width, self.height = self._stream.width, self._stream.height
        self.frame_count = self._stream.frames or None

    def frames(self) -> Iterator[Any]:
        import av

        errors = 0
        for packet in self._container.demux(self._stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError as e:
                errors += 1
                if errors > MAX_CONSECUTIVE_ERRORS:
                    raise EdgesegError(
                        f"{self.name}: {errors} decode errors in a row, giving up ({e})"
                    ) from None
                yield CorruptFrame(f"decode error at pts {packet.pts}: {e}")
                continue
            errors = 0
            for frame in decoded:
                try:
                    yield frame.to_ndarray(format="rgb24")
                except (av.FFmpegError, ValueError) as e:
                    yield CorruptFrame(f"frame at pts {frame.pts} cannot be converted: {e}")

    def close(self) -> None:
        self._container.close()


class IterableSource(FrameSource):
    """Frames from any iterable or iterator (a list, a generator, a camera wrapper).

    An exception raised while fetching one frame is reported as a :class:`CorruptFrame`; a
    non-generator iterator is then asked for the next frame (a generator cannot resume after
    raising, so for generators the stream ends there).

    Args:
        frames: the frames.
        color: their channel order. Defaults to RGB.
        live: drop the oldest frame under back-pressure. Defaults to False.
        fps: nominal frame rate, if known.
    """

    def __init__(
        self,
        frames: Iterable[Any],
        color: str = "rgb",
        live: bool = False,
        fps: Fraction | float | None = None,
    ) -> None:
        self._frames = frames
        self.color = color
        self.live = live
        self.fps = Fraction(fps).limit_denominator(1001) if fps else None
        self.name = type(frames).__name__

    def frames(self) -> Iterator[Any]:
        it = iter(self._frames)
        errors = 0
        while True:
            try:
                frame = next(it)
            except StopIteration:
                return
            except Exception as e:  # the user's source failed on one frame: skip it, keep the stream
                errors += 1
                if errors > MAX_CONSECUTIVE_ERRORS:
                    raise EdgesegError(
                        f"{self.name}: {errors} failed reads in a row, giving up ({e})"
                    ) from None
                yield CorruptFrame(f"{type(e).__name__}: {e}")
                continue
            errors = 0
            yield frame


def open_source(obj: Any, color: str = "rgb") -> FrameSource:
    """A :class:`FrameSource` for a path/URL (decoded as RGB), an iterable, or a source itself."""
    if isinstance(obj, FrameSource):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return VideoSource(obj)
    if isinstance(obj, Iterable):
        return IterableSource(obj, color=color)
    raise EdgesegError(f"expected a video path/URL or an iterable of frames, got {type(obj).__name__}")
