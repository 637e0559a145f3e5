"""Pure-PyTorch reference of the fused DDC op: the math the C++ and CUDA kernels must reproduce.

It computes steps 2-4 of the unfused :class:`~edgeseg.models.dbmsnet.DDCBlock` with separate
depthwise convs, but writes the five branches straight into shuffled channel order (as the kernels
do) instead of concatenating and shuffling: an independent formulation, so comparing it with the
model's ``channel_shuffle`` checks both. It doubles as the fallback when the compiled extension is
missing, and as the oracle of every kernel test. It imports nothing from :mod:`edgeseg.models`:
models build on the op, not the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fused_ddc_reference", "NUM_BRANCHES"]

# Four dilated depthwise branches plus the pooled branch = the channel-shuffle groups.
NUM_BRANCHES = 5


def fused_ddc_reference(
    x: Tensor,
    weight: Tensor,
    dilations: Sequence[int],
    scale: Tensor,
    shift: Tensor,
    pooled: Tensor,
    residual: Tensor | None = None,
) -> Tensor:
    """DDC steps 2-4 with BatchNorm folded: four dilated depthwise branches, pooling, shuffle, add.

    Args:
        x: the DDC's reduced map, (N, C, H, W).
        weight: the four depthwise 3x3 kernels, (4, C, 3, 3).
        dilations: four dilations; padding equals dilation so every branch keeps H x W.
        scale: per-branch, per-channel BN scale, (4, C).
        shift: per-branch, per-channel BN shift, (4, C).
        pooled: the pooling branch's activated vector, (N, C), broadcast over H x W.
        residual: added to the shuffled result, (N, 5C, H, W), or None.

    Returns:
        ``shuffle(concat(relu(scale[b] * dwconv_b(x) + shift[b]) for b < 4, pooled), 5) + residual``,
        (N, 5C, H, W), in x's dtype.
    """
    n, c, h, w = x.shape
    ys = []
    for b, d in enumerate(dilations):
        z = F.conv2d(x, weight[b].unsqueeze(1), padding=int(d), dilation=int(d), groups=c)
        ys.append(torch.relu(z * scale[b].view(1, c, 1, 1) + shift[b].view(1, c, 1, 1)))
    ys.append(pooled.view(n, c, 1, 1).expand(n, c, h, w))
    # Shuffling concat(branches) with 5 groups puts channel c of branch b at c * 5 + b: stacking the
    # branches on a new axis after the channels and flattening gives exactly that order.
    y = torch.stack(ys, 2).reshape(n, NUM_BRANCHES * c, h, w)
    return y if residual is None else y + residual
