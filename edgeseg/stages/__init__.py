"""``edgeseg build``: the stage pipeline over a build folder (``engines/<name>/``).

Typical use::

    from edgeseg.stages import Build, BuildOptions

    result = Build(BuildOptions(precision="int8")).run()   # the shipped demo model
    print(result.folder, result.engine_status)

See :mod:`edgeseg.stages.pipeline` for the stages and :mod:`edgeseg.stages.record` for
``build.json``; ``engines/README.md`` documents the folder and ``report.json``.
"""

from edgeseg.stages.options import (
    DEMO_CALIBRATION,
    DEMO_MODEL,
    PLUGINS,
    PRECISIONS,
    BuildOptions,
    ModelSource,
    resolve_model,
)
from edgeseg.stages.pipeline import Build, BuildResult, Reporter, deploy_onnx_name, engine_name, finish_hint
from edgeseg.stages.record import BUILD_FORMAT, BuildRecord, StageRecord

__all__ = [
    "BUILD_FORMAT",
    "DEMO_CALIBRATION",
    "DEMO_MODEL",
    "PLUGINS",
    "PRECISIONS",
    "Build",
    "BuildOptions",
    "BuildRecord",
    "BuildResult",
    "ModelSource",
    "Reporter",
    "StageRecord",
    "deploy_onnx_name",
    "engine_name",
    "finish_hint",
    "resolve_model",
]
