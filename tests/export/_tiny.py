"""Tiny networks shared by the export and precision tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Input (H, W) and classes of the small DBMSNet the export tests use.
DBMS_SIZE = (64, 64)
DBMS_CLASSES = 5


class TinySegNet(nn.Module):
    """Conv-BN-ReLU at stride 2, a pooled context branch, bilinear upsampling to the input."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.context = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        pooled = F.avg_pool2d(y, 4)
        y = y + F.interpolate(self.context(pooled), size=y.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)
