"""The one tiny segmentation network of the test suite (export, precision and training tests).

Importable from every test package as ``tiny_nets``: pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` lives there and ``tests/`` is not a package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinySegNet"]


class TinySegNet(nn.Module):
    """Conv-BN-ReLU, a pooled context branch, 1x1 classifier, bilinear upsampling to the input.

    Follows the zoo contract: train mode returns ``{"out", "aux"}``, eval mode a logits Tensor, so
    the same network exports (Conv, AveragePool, Resize, Add in the graph) and trains.

    Args:
        num_classes: output classes. Defaults to 3.
        stride: stride of the first conv. Defaults to 2 (the graph upsamples); training tests on
            per-pixel random masks use 1 so every pixel can be classified.
        bn: BatchNorm after the first conv. Defaults to True.
        dropout: ``Dropout2d`` before the classifier (draws from the global RNG). Defaults to 0.
    """

    def __init__(
        self, num_classes: int = 3, *, stride: int = 2, bn: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        # Attribute order fixes the order weights are drawn in (the export tests' seeded results).
        self.conv = nn.Conv2d(3, 16, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(16) if bn else nn.Identity()
        self.context = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(16, num_classes, 1)
        self.aux = nn.Conv2d(16, num_classes, 1)
        self.drop = nn.Dropout2d(dropout)
        self.aux_weights = {"aux": 0.4}

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        y = F.relu(self.bn(self.conv(x)))
        pooled = F.avg_pool2d(y, 4)
        y = y + F.interpolate(self.context(pooled), size=y.shape[-2:], mode="bilinear", align_corners=False)
        out = F.interpolate(self.head(self.drop(y)), size=size, mode="bilinear", align_corners=False)
        if self.training:
            aux = F.interpolate(self.aux(y), size=size, mode="bilinear", align_corners=False)
            return {"out": out, "aux": aux}
        return out
