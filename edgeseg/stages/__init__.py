"""``edgeseg build``: the stages over a build folder (``engines/<name>/``) and their executor.

Typical use::

    import edgeseg

    result = edgeseg.build(precision="int8")          # the shipped demo model
    print(result.folder, result.engine_status, result.report["passed"])

Where to look: :mod:`edgeseg.stages.executor` holds the list of stages and the executor,
:mod:`~edgeseg.stages.export`, :mod:`~edgeseg.stages.precision` and :mod:`~edgeseg.stages.deploy`
the stages, :mod:`~edgeseg.stages.context` what they share, :mod:`~edgeseg.stages.options` the
options, and :mod:`edgeseg.build_folder` the folder's files (``build.json``, ``report.json``).
"""

from edgeseg.stages.context import BuildContext, Reporter, finish_hint
from edgeseg.stages.executor import STAGES, Build, BuildResult, stage_names
from edgeseg.stages.options import DEMO_CALIBRATION, PLUGINS, BuildOptions, ModelSource, resolve_model

__all__ = [
    "DEMO_CALIBRATION",
    "PLUGINS",
    "STAGES",
    "Build",
    "BuildContext",
    "BuildOptions",
    "BuildResult",
    "ModelSource",
    "Reporter",
    "finish_hint",
    "resolve_model",
    "stage_names",
]
