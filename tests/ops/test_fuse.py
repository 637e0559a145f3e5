"""fuse_model: BatchNorm folding and DDC block replacement agree with the unfused model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models import build_model
from edgeseg.models.dbmsnet import DDCBlock
from edgeseg.ops import FusedDDC, fuse_model
from edgeseg.ops.fuse import fold_conv_bn

DEMO_MODEL = Path(__file__).resolve().parents[2] / "edgeseg" / "assets" / "demo_dbmsnet.pt"


def _max_err_vs_range(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs error in units of max(1, max |ref|): FP32 rounding grows with the logits' magnitude,
    and a deep random network's logits reach the hundreds."""
    return (out - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def test_fold_conv_bn_matches_conv_then_bn(randomize_bn) -> None:
    conv = nn.Conv2d(8, 12, 3, padding=2, dilation=2, groups=4, bias=True)
    bn = randomize_bn(nn.Sequential(nn.BatchNorm2d(12)))[0]
    seq = nn.Sequential(conv, bn).eval()
    x = torch.randn(2, 8, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(fold_conv_bn(conv, bn)(x), seq(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dilations", [(1, 3, 5, 7), (13, 16, 18, 20), (1, 2, 3, 5)])
def test_fused_block_matches_ddc_block(dilations, randomize_bn) -> None:
    torch.manual_seed(0)
    block = randomize_bn(DDCBlock(40, dilations)).eval()
    x = torch.randn(2, 40, 13, 17)
    with torch.no_grad():
        ref = block(x)
        out = FusedDDC.from_ddc(block)(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_fuse_replaces_every_ddc_block(tiny_ddc_net) -> None:
    x = torch.randn(1, 3, 21, 30)
    with torch.no_grad():
        ref = tiny_ddc_net(x)
        fused = fuse_model(copy.deepcopy(tiny_ddc_net))
        out = fused(x)
    assert [type(m) for m in fused.blocks] == [FusedDDC] * 3
    assert not any(isinstance(m, (DDCBlock, nn.BatchNorm2d)) for m in fused.modules())
    assert [m.dilations for m in fused.blocks] == [(1, 3, 5, 7), (5, 7, 11, 13), (13, 15, 17, 19)]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_fuse_dbmsnet_r18(randomize_bn) -> None:
    torch.manual_seed(0)
    model = randomize_bn(build_model("dbmsnet_r18_os16", num_classes=5, width=0.5), seed=1).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        fused = copy.deepcopy(model).fuse()  # DBMSNet.fuse() delegates to fuse_model
        out = fused(x)
    assert sum(isinstance(m, FusedDDC) for m in fused.modules()) == 3  # MDM blocks S, M, L
    assert _max_err_vs_range(out, ref) <= 1e-5


@pytest.mark.skipif(
    not DEMO_MODEL.is_file(), reason=f"demo model {DEMO_MODEL.name} not shipped in this checkout"
)
def test_fuse_demo_model() -> None:
    from edgeseg.checkpoint import load_model

    model, card = load_model(DEMO_MODEL)
    h, w = card.input_size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        out = fuse_model(copy.deepcopy(model))(x)
    # Trained logits stay small (|logit| < ~20), so the 1e-5 bound holds in absolute terms here.
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_fuse_needs_eval_mode(tiny_ddc_net) -> None:
    with pytest.raises(EdgesegError, match="eval mode"):
        fuse_model(tiny_ddc_net.train())


def test_fused_block_refuses_training(tiny_ddc_net) -> None:
    fused = fuse_model(tiny_ddc_net)
    fused.train()
    with pytest.raises(EdgesegError, match="inference-only"):
        fused(torch.randn(1, 3, 8, 8))


def test_fuse_rejects_block_outside_contract(tiny_ddc_net) -> None:
    # A branch whose padding differs from its dilation is not what the op computes: refuse, by name.
    tiny_ddc_net.blocks[1].branches[2][0].padding = (1, 1)
    with pytest.raises(EdgesegError, match=r"blocks\.1\.branches\.2: expected dilation = zero padding = 11"):
        fuse_model(tiny_ddc_net)
