"""Export-friendly layers: adaptive pooling equal to torch's, resize, channel shuffle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeseg.models.layers import adaptive_avg_pool2d, channel_shuffle, resize
from edgeseg.models.psp import PyramidPooling


@pytest.mark.parametrize("hw", [(12, 12), (7, 9), (5, 13), (4, 4), (2, 3), (1, 1), (17, 6)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6, (2, 5)])
def test_adaptive_avg_pool_matches_torch(hw: tuple[int, int], bins: int | tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    ours = adaptive_avg_pool2d(x, bins)
    ref = F.adaptive_avg_pool2d(x, bins)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)


class _Pool(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, 6)


@pytest.mark.parametrize("hw", [(12, 12), (7, 9)])
def test_adaptive_avg_pool_exports_without_adaptive_op(hw: tuple[int, int]) -> None:
    """The exported graph (what the ONNX exporter sees) has no adaptive pool, divisible or not."""
    program = torch.export.export(_Pool(), (torch.randn(1, 2, *hw),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("adaptive" in t for t in targets), targets
    expected = "avg_pool2d" if hw == (12, 12) else "mean"
    assert any(expected in t for t in targets), targets


def test_pyramid_pooling_shapes_and_order() -> None:
    ppm = PyramidPooling(8, 2, bins=(1, 2, 3, 6)).eval()
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        y = ppm(x)
    assert y.shape == (1, 8 + 4 * 2, 5, 7)
    assert torch.equal(y[:, :8], x)  # the input comes first, then the pooled branches
    assert ppm.out_channels == 16


def test_resize_is_bilinear_without_align_corners() -> None:
    x = torch.randn(1, 2, 3, 5)
    y = resize(x, (7, 11))
    assert torch.equal(y, F.interpolate(x, size=(7, 11), mode="bilinear", align_corners=False))
    assert resize(x, (3, 5)) is x


def test_channel_shuffle_is_a_permutation() -> None:
    x = torch.arange(20.0).view(1, 20, 1, 1)
    y = channel_shuffle(x, 5).flatten()
    # Channel j of group g (index g*4 + j) moves to position j*5 + g.
    assert y.tolist() == [g * 4 + j for j in range(4) for g in range(5)]
