"""Small building blocks shared by every model in the zoo, written to export cleanly to ONNX.

Everything here is chosen with TensorRT in mind: adaptive pooling becomes ``AveragePool`` or a few
``Slice``/``ReduceMean`` nodes with constant bounds (never an ``AdaptiveAvgPool`` fallback), global
pooling is ``ReduceMean``, and resizes are bilinear with ``align_corners=False`` and no antialias
(the ``Resize`` mode TensorRT supports natively).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvNormAct",
    "adaptive_avg_pool2d",
    "channel_shuffle",
    "init_weights",
    "resize",
]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _bin_mean(x: Tensor, bins: int, dim: int) -> Tensor:
    """Average ``x`` along ``dim`` over torch's adaptive-pool bins, concatenated along ``dim``."""
    length = int(x.shape[dim])
    pieces = []
    for i in range(bins):
        # The exact bin edges F.adaptive_avg_pool2d uses; with Python ints they become constants.
        start = (i * length) // bins
        end = math.ceil((i + 1) * length / bins)
        pieces.append(x.narrow(dim, start, end - start).mean(dim, keepdim=True))
    return torch.cat(pieces, dim) if len(pieces) > 1 else pieces[0]


def adaptive_avg_pool2d(x: Tensor, output_size: int | Sequence[int]) -> Tensor:
    """``F.adaptive_avg_pool2d`` written with ops that export to plain ONNX.

    A global pool is ``mean((2, 3))``; when the input size is a multiple of the output size it is an
    ``avg_pool2d`` with kernel = stride; otherwise each output cell is the mean of the same window
    torch uses (rows ``floor(i*H/b)`` to ``ceil((i+1)*H/b)``), computed separably (rows, then
    columns), which is exact because every window is a rectangle.

    Args:
        x: input of shape (N, C, H, W). H and W must be static (Python ints at trace time).
        output_size: ``b`` or ``(bh, bw)``.

    Returns:
        Tensor of shape (N, C, bh, bw), equal to ``F.adaptive_avg_pool2d(x, output_size)`` up to
        float rounding.
    """
    bh, bw = _pair(output_size)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (bh, bw) == (1, 1):
        return x.mean((2, 3), keepdim=True)
    if h % bh == 0 and w % bw == 0:
        return F.avg_pool2d(x, kernel_size=(h // bh, w // bw))
    return _bin_mean(_bin_mean(x, bh, 2), bw, 3)


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize (``align_corners=False``, no antialias); a no-op when the size already matches.

    Args:
        x: input of shape (N, C, H, W).
        size: target (H, W).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: ``view(N, g, C/g, H, W) → transpose(1, 2) → view(N, C, H, W)``.

    Args:
        x: input of shape (N, C, H, W) with C divisible by ``groups``.
        groups: number of groups g.
    """
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ConvNormAct(nn.Sequential):
    """``Conv2d`` (no bias) → ``BatchNorm2d`` → ``ReLU``, as a ``Sequential`` (keys ``0``, ``1``, ``2``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size; padding keeps the spatial size (``dilation * (k // 2)``).
        stride: convolution stride.
        dilation: convolution dilation.
        groups: convolution groups.
        act: append the ReLU. Defaults to True.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=dilation * (kernel_size // 2),
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (fan-out, ReLU gain), zero biases, BatchNorm at identity.

    Args:
        module: model or submodule, initialised in place (apply with ``module.apply`` or directly;
            this walks ``module.modules()`` itself).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
