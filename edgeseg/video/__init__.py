"""Video in, segmented video out: sources (PyAV, iterables), the threaded pipeline, the encoder.

See :class:`~edgeseg.video.pipeline.Pipeline` for the stage layout and its drop/skip/stop
policies, and ``edgeseg video --help`` for the command.
"""

from edgeseg.video.pipeline import FrameResult, Pipeline, StreamStats, stream
from edgeseg.video.sinks import VideoWriter
from edgeseg.video.sources import CorruptFrame, FrameSource, IterableSource, VideoSource, open_source

__all__ = [
    "Pipeline",
    "StreamStats",
    "FrameResult",
    "VideoWriter",
    "CorruptFrame",
    "FrameSource",
    "IterableSource",
    "VideoSource",
    "open_source",
    "stream",
]
