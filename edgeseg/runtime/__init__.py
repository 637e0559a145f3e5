"""The deployment runtime: :class:`Segmenter` turns raw frames into class maps on any backend.

Submodules: :mod:`~edgeseg.runtime.frames` (input checks), :mod:`~edgeseg.runtime.processing`
(pre/postprocessing, overlays), :mod:`~edgeseg.runtime.backends` (which runner to use),
:mod:`~edgeseg.runtime.segmenter`.
"""

from edgeseg.runtime.segmenter import Segmenter, SegResult

__all__ = ["Segmenter", "SegResult"]
