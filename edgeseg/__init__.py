"""edgeseg: semantic-segmentation networks from PyTorch to validated TensorRT engines.

Importing the package is cheap: it pulls in neither TensorRT nor ONNX Runtime. Heavy backends are
imported lazily by the modules that use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime import Segmenter, SegResult
    from edgeseg.stages import BuildResult, Reporter

__all__ = ["EdgesegError", "Segmenter", "SegResult", "__version__", "build"]
__version__ = "0.1.0"


def build(model: Any = None, *, reporter: Reporter | None = None, **options: Any) -> BuildResult:
    """Build a model into a validated deployment folder: what ``edgeseg build`` does, from Python.

    Args:
        model: a zoo preset name, an edgeseg bundle (``.pt``), a ``torch.export`` program
            (``.pt2``), an FP32 ONNX file, or any ``torch.nn.Module`` (docs/your-own-model.md).
            Defaults to the shipped demo model.
        reporter: receives progress (:class:`edgeseg.stages.Reporter`). Defaults to silent.
        **options: any :class:`edgeseg.stages.BuildOptions` field (``precision="int8"``,
            ``calib_data=...``, ``out_dir=...``).

    Returns:
        The :class:`edgeseg.stages.BuildResult` (folder, precision, report, per-stage summary).

    Raises:
        EdgesegError: bad options or input; :class:`edgeseg.errors.AccuracyGateError` when the
            built precision misses its accuracy gate.
    """
    from edgeseg.stages import Build, BuildOptions

    return Build(BuildOptions(model=model, **options), reporter).run()


def __getattr__(name: str) -> Any:
    # `edgeseg.Segmenter` imports torch; resolve it on first use so `import edgeseg` stays light.
    if name in ("Segmenter", "SegResult"):
        from edgeseg import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
