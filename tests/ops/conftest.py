"""Shared fixtures of the fused-op tests: tiny models, the C++ source tree, the CUDA compiler."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.models.dbmsnet import DDCBlock


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so folding is exercised
    (a freshly initialised BN is the identity and would hide a wrong fold)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
    return model


class TinyDDCNet(nn.Module):
    """Stem conv, the MDM's three DDC blocks (S, M, L), 1x1 classifier: the fused path in miniature."""

    def __init__(self, channels: int = 40, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(
            DDCBlock(channels, (1, 3, 5, 7)),
            DDCBlock(channels, (5, 7, 11, 13)),
            DDCBlock(channels, (13, 15, 17, 19)),
        )
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@pytest.fixture
def tiny_ddc_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(TinyDDCNet()).eval()


@pytest.fixture
def randomize_bn():
    """:func:`randomize_batchnorm`, for tests that build their own model."""
    return randomize_batchnorm


@pytest.fixture
def cpp_ext_dir() -> Path:
    """The repository's cpp_ext/ folder."""
    return Path(__file__).resolve().parents[2] / "cpp_ext"


@pytest.fixture
def nvcc() -> str:
    """nvcc from PATH, CUDA_HOME, CUDA_PATH or /usr/local/cuda; skips the test where there is none."""
    found = shutil.which("nvcc")
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if not found and root and (Path(root) / "bin" / "nvcc").is_file():
            found = str(Path(root) / "bin" / "nvcc")
    if not found:
        pytest.skip("nvcc not found (PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda): CUDA code not compiled")
    return found
