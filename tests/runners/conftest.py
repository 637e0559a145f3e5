"""The suite's tiny network and its ONNX export, shared by the runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_nets import TinySegNet
from torch import nn


@pytest.fixture(scope="session")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinySegNet(stride=1).eval()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny net exported with the dynamo exporter; batch is dynamic, spatial size 16x16."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    batch = torch.export.Dim("N", min=1, max=8)
    torch.onnx.export(tiny_model, (torch.zeros(2, 3, 16, 16),), str(path), dynamo=True,
                      input_names=["images"], output_names=["logits"],
                      dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)
    return path
