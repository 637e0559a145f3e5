"""The one tiny segmentation network of the test suite (export, precision and training tests).

Importable from every test package as ``tiny_nets``: pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` lives there and ``tests/`` is not a package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MobileSegNet", "TinySegNet"]


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


class _InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand, 3x3 depthwise, optional squeeze-excite, 1x1 project (+ input)."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int, act: type[nn.Module], se: bool) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act()]
        layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), act()]
        self.body = nn.Sequential(*layers)
        # Squeeze-excite: a per-channel gate from the pooled map, hard-sigmoid as in MobileNetV3.
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, max(8, mid // 4), 1), nn.ReLU(),
                                nn.Conv2d(max(8, mid // 4), mid, 1), nn.Hardsigmoid()) if se else None
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.se is not None:
            y = y * self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileSegNet(nn.Module):
    """A small MobileNetV3-style segmentation net: the kind INT8 post-training quantization hurts.

    Hard-swish stem, inverted residuals with depthwise convs and squeeze-excite (output stride 8),
    and an LR-ASPP-like head: the deep features times a sigmoid gate from their global pool, plus a
    classifier on the stride-4 features, upsampled to the input. Eval mode returns logits, train
    mode ``{"out"}`` (the zoo contract). Used by the INT8 guard's tests and benchmark only.

    Args:
        num_classes: output classes. Defaults to 7 (the synthetic set's).
        width: channel multiplier. Defaults to 1.0.
        bn_spread: BatchNorm scales start log-uniform in ``[1/bn_spread, bn_spread]`` (drawn from
            torch's global RNG) instead of 1, so per-channel activation ranges differ widely, as
            in long-trained MobileNets, which a few CPU minutes of training do not reach. Defaults
            to 1 (PyTorch's initialisation).
    """

    def __init__(self, num_classes: int = 7, width: float = 1.0, bn_spread: float = 1.0) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(8, int(round(n * width / 8)) * 8)

        hs, relu = nn.Hardswish, nn.ReLU
        self.stem = nn.Sequential(nn.Conv2d(3, c(16), 3, 2, 1, bias=False), nn.BatchNorm2d(c(16)), hs())
        # (out channels, expansion, stride, activation, squeeze-excite)
        config = [(16, 1, 1, relu, True), (24, 4, 2, relu, False), (24, 3, 1, relu, False),
                  (40, 3, 2, hs, True), (40, 3, 1, hs, True), (48, 3, 1, hs, True)]
        blocks, cin = [], c(16)
        for cout, expand, stride, act, se in config:
            blocks.append(_InvertedResidual(cin, c(cout), expand, stride, act, se))
            cin = c(cout)
        self.low = nn.Sequential(*blocks[:3])  # stride 4
        self.high = nn.Sequential(*blocks[3:])  # stride 8
        self.aspp = nn.Sequential(nn.Conv2d(cin, c(64), 1, bias=False), nn.BatchNorm2d(c(64)), nn.ReLU())
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, c(64), 1), nn.Sigmoid())
        self.classifier = nn.Conv2d(c(64), num_classes, 1)
        self.low_classifier = nn.Conv2d(c(24), num_classes, 1)
        if bn_spread != 1.0:
            with torch.no_grad():
                for bn in self.modules():
                    if isinstance(bn, nn.BatchNorm2d):
                        u = 2 * torch.rand(bn.num_features) - 1
                        bn.weight.copy_(torch.exp(u * math.log(bn_spread)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        low = self.low(self.stem(x))
        high = self.high(low)
        y = self.classifier(self.aspp(high) * self.gate(high))
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = y + self.low_classifier(low)
        out = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return {"out": out} if self.training else out
