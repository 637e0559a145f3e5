"""FCN-32s/16s/8s and FPN-FCN: head structure and the decoder formulas of docs/design.md §3.2-3.3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models import build_model


def _up(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def test_fcn_head_is_the_convolutionalised_classifier() -> None:
    with torch.device("meta"):
        model = build_model("fcn32s_vgg16")
    fc6, fc7 = model.head.fc6, model.head.fc7
    assert (fc6.in_channels, fc6.out_channels, fc6.kernel_size, fc6.padding) == (512, 4096, (7, 7), (3, 3))
    assert (fc7.in_channels, fc7.out_channels, fc7.kernel_size) == (4096, 4096, (1, 1))
    assert isinstance(model.head.drop6, nn.Dropout) and model.head.drop6.p == 0.5
    assert model.score.out_channels == 19
    # No transposed convolutions anywhere: upsampling is bilinear interpolation.
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())


@pytest.mark.parametrize(("preset", "skips"), [("fcn32s_vgg16", 0), ("fcn16s_vgg16", 1), ("fcn8s_vgg16", 2)])
def test_fcn_skip_fusion(preset: str, skips: int) -> None:
    torch.manual_seed(0)
    model = build_model(preset, num_classes=4, fc_channels=16).eval()
    assert len(model.score_skips) == skips
    x = torch.randn(1, 3, 72, 104)  # not a multiple of 32: skips are resized to the exact size
    with torch.no_grad():
        pools = model.backbone(x)
        s = model.score(model.head(pools[4]))
        for feat, score in zip((pools[3], pools[2])[:skips], model.score_skips, strict=True):
            s = _up(s, feat) + score(feat)
        expected = F.interpolate(s, size=(72, 104), mode="bilinear", align_corners=False)
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_fpn_fcn_structure_and_formula() -> None:
    torch.manual_seed(0)
    model = build_model("fpnfcn_vgg16", num_classes=3, fc_channels=16).eval()
    # Level k (fpn_{k+2}): lateral from the previous level's channels to pool_{4-k}'s, 3×3 smooth.
    assert [(c.in_channels, c.out_channels) for c in model.lateral] == [
        (512, 512),
        (512, 256),
        (256, 128),
        (128, 64),
    ]
    assert all(c.kernel_size == (3, 3) and c.in_channels == c.out_channels for c in model.smooth)
    assert [c.in_channels for c in model.score_fpn] == [512, 256, 128, 64]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        p1, p2, p3, p4, p5 = model.backbone(x)
        fpn = p5
        s = model.score(model.head(fpn))  # fpn1 goes through fc6/fc7
        for k, pool in enumerate((p4, p3, p2, p1)):
            fpn = model.smooth[k](pool + model.lateral[k](_up(fpn, pool)))
            s = _up(s, pool) + model.score_fpn[k](fpn)
        logits = model.forward_logits(x)["out"]
        assert logits.shape[-2:] == (32, 48)  # fused down to pool1 = 1/2
        assert torch.allclose(logits, s, atol=1e-5)
        assert model(x).shape == (1, 3, 64, 96)
