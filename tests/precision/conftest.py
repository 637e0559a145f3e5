"""Shared fixtures of the precision tests: a tiny exported network and preprocessed images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# tests/ is on sys.path (pytest inserts the first folder above a test package), so the export
# tests' tiny network is importable as export._tiny.
from export._tiny import TinySegNet

from edgeseg.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from edgeseg.export import ExportConfig, export_onnx, simplify_onnx
from edgeseg.precision.calibration import load_calibration_set

SIZE = (32, 32)



@pytest.fixture(scope="session")
def tiny_net() -> TinySegNet:
    torch.manual_seed(0)
    return TinySegNet(num_classes=3).eval()


@pytest.fixture(scope="session")
def tiny_sim(tiny_net: TinySegNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny network exported and simplified at 32x32."""
    folder = tmp_path_factory.mktemp("tiny")
    export_onnx(tiny_net, folder / "model.onnx", ExportConfig(input_size=SIZE))
    simplify_onnx(folder / "model.onnx", folder / "model.sim.onnx")
    return folder / "model.sim.onnx"


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """12 synthetic validation images, preprocessed for a 32x32 ImageNet-normalised model."""
    return load_calibration_set("synthetic::val", input_size=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                size=12).images
