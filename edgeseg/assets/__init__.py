"""Data shipped inside the package: the demo model, its calibration set, the target profiles.

Everything the CLI reads by default lives here and is found through :mod:`importlib.resources`, so
a wheel install run from any folder finds it (a source checkout is never assumed)::

    demo_dbmsnet.pt          the demo model bundle (docs/demo-model.md)
    calibration/<name>.yaml  calibration manifests (``--calib-data <name>``) and their image sets
    targets/<name>.toml      target profiles (``--target <name>``)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["CALIBRATION_DIR", "DEMO_MODEL", "TARGETS_DIR", "asset_path"]


def asset_path(*parts: str) -> Path:
    """Filesystem path of a shipped asset.

    Wheels install edgeseg as plain files (it carries a compiled extension, so it is never run
    from a zip), hence the resource root is a real folder that ``glob`` and ``open`` can use.
    """
    return Path(str(files(__name__).joinpath(*parts)))


DEMO_MODEL = asset_path("demo_dbmsnet.pt")
CALIBRATION_DIR = asset_path("calibration")
TARGETS_DIR = asset_path("targets")
