"""Pyramid pooling blocks (PSPNet, Zhao et al., https://arxiv.org/abs/1612.01105).

The PSPNet-style baseline of the zoo is DBMSNet's semantic branch alone (the paper's ``De4(PPM)``
ablation), so its preset ``pspnet_r50vd_os16`` lives with DBMSNet's presets in
:mod:`edgeseg.models.dbmsnet`; this module holds the pyramid pooling blocks both use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edgeseg.models.layers import ConvNormAct, adaptive_avg_pool2d, resize

__all__ = ["PPMHead", "PyramidPooling"]


class PyramidPooling(nn.Module):
    """Pool to each bin size, 1×1 conv + BN + ReLU, upsample back and concat with the input.

    Output channels: ``in_channels + len(bins) * channels``. The pools use
    :func:`~edgeseg.models.layers.adaptive_avg_pool2d`, which exports as plain ONNX ops.

    Args:
        in_channels: input channels (De4's, from the backbone's ``feature_info``).
        channels: output channels of each pooled branch.
        bins: output sizes of the adaptive pools. Defaults to (1, 2, 3, 6).
    """

    def __init__(self, in_channels: int, channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(ConvNormAct(in_channels, channels, 1) for _ in self.bins)
        self.out_channels = in_channels + len(self.bins) * channels

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            resize(stage(adaptive_avg_pool2d(x, b)), size)
            for b, stage in zip(self.bins, self.stages, strict=True)
        ]
        return torch.cat([x, *pooled], dim=1)


class PPMHead(nn.Sequential):
    """Pyramid pooling → 3×3 conv to ``out_channels`` + BN + ReLU → 1×1 classifier (``PP_Out`` path).

    Args:
        in_channels: De4 channels.
        num_classes: classifier outputs.
        channels: channels of each pooled branch.
        out_channels: ``PP_Out``, channels of the 3×3 conv.
        bins: adaptive pool sizes.
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, channels: int, out_channels: int, bins: Sequence[int]
    ) -> None:
        ppm = PyramidPooling(in_channels, channels, bins)
        super().__init__()
        self.ppm = ppm
        self.bottleneck = ConvNormAct(ppm.out_channels, out_channels, 3)
        self.classifier = nn.Conv2d(out_channels, num_classes, 1)
