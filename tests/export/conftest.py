"""Shared exports for the export tests: a small real DBMSNet and a tiny conv net, exported once.

Torch runs on one thread: on a shared 2-core machine OpenMP workers mostly wait on each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.export import ExportConfig, export_onnx, simplify_onnx

from ._tiny import DBMS_CLASSES, DBMS_SIZE


@pytest.fixture(scope="session")
def dbmsnet() -> nn.Module:
    from edgeseg.models import build_model

    torch.manual_seed(0)
    return build_model("dbmsnet_r18_os16", num_classes=DBMS_CLASSES, width=0.25).eval()


@pytest.fixture(scope="session")
def dbmsnet_onnx(dbmsnet: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """(raw ONNX, simplified ONNX, SimplifyResult) of the small DBMSNet at 64x64."""
    folder = tmp_path_factory.mktemp("dbmsnet_export")
    raw, sim = folder / "model.onnx", folder / "model.sim.onnx"
    export_onnx(dbmsnet, raw, ExportConfig(input_size=DBMS_SIZE))
    return raw, sim, simplify_onnx(raw, sim)
