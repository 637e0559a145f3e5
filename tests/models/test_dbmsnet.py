"""DBMSNet: the DDC block contract, MDM/FR/PPM ablation switches and the merge."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models import build_model
from edgeseg.models.dbmsnet import DBMSNet, DDCBlock
from edgeseg.models.layers import channel_shuffle


def _randomise_bn(module: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics so eval-mode checks see real scale/shift."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_ddc_block_structure_matches_contract() -> None:
    block = DDCBlock(320, (1, 3, 5, 7))
    conv, bn = block.reduce[0], block.reduce[1]
    assert isinstance(block.reduce, nn.Sequential) and len(block.reduce) == 2
    assert (conv.in_channels, conv.out_channels, conv.groups, conv.kernel_size) == (320, 64, 4, (1, 1))
    assert conv.bias is None and isinstance(bn, nn.BatchNorm2d)
    assert isinstance(block.branches, nn.ModuleList) and len(block.branches) == 4
    for branch, d in zip(block.branches, (1, 3, 5, 7), strict=True):
        c, b, r = branch
        assert (c.groups, c.in_channels, c.out_channels, c.kernel_size) == (64, 64, 64, (3, 3))
        assert (c.dilation, c.padding, c.bias) == ((d, d), (d, d), None)
        assert isinstance(b, nn.BatchNorm2d) and isinstance(r, nn.ReLU)
    pc, pb, pr = block.pool
    assert (pc.in_channels, pc.out_channels, pc.kernel_size, pc.bias) == (64, 64, (1, 1), None)
    assert isinstance(pb, nn.BatchNorm2d) and isinstance(pr, nn.ReLU)
    assert block.dilations == (1, 3, 5, 7)


def test_ddc_block_forward_equals_contract_formula() -> None:
    torch.manual_seed(0)
    block = DDCBlock(40, (1, 2, 3, 5)).eval()
    _randomise_bn(block)
    x = torch.randn(2, 40, 7, 9)
    with torch.no_grad():
        r = block.reduce(x)
        ys = [b(r) for b in block.branches] + [block.pool(r.mean((2, 3), keepdim=True)).expand_as(r)]
        expected = channel_shuffle(torch.cat(ys, 1), 5) + x
        # Independent spelling of the branch math (functional conv) to pin padding/dilation.
        c0 = block.branches[2][0]
        manual = F.conv2d(r, c0.weight, padding=3, dilation=3, groups=8)
        assert torch.allclose(block.branches[2][0](r), manual, atol=1e-6)
        assert torch.allclose(block(x), expected, atol=1e-6)
    # Shuffle puts channel j of branch b at position j*5 + b.
    y = torch.arange(10.0).view(1, 10, 1, 1)
    assert channel_shuffle(y, 5).flatten().tolist() == [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]


def test_ddc_block_rejects_bad_channels() -> None:
    with pytest.raises(EdgesegError, match="divisible by 20"):
        DDCBlock(50, (1, 3, 5, 7))


@pytest.fixture(scope="module")
def r18() -> DBMSNet:
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", width=0.25)
    assert isinstance(model, DBMSNet)
    return model


def test_default_mdm_and_dilations(r18: DBMSNet) -> None:
    assert r18.mdm is not None
    assert list(r18.mdm.blocks) == ["S", "M", "L"]
    assert [b.dilations for b in r18.mdm.blocks.values()] == [(1, 3, 5, 7), (5, 7, 11, 13), (13, 15, 17, 19)]
    assert r18.mdm.out_channels == 400
    assert r18.mdm.attention is None
    assert all(b.reduce[0].out_channels == 64 for b in r18.mdm.blocks.values())
    assert r18.branch_weights == {"fr": 0.4, "ppm": 1.0} and r18.aux_weights == {}


def test_merge_is_weighted_sum_of_branches(r18: DBMSNet) -> None:
    r18.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = r18.forward_logits(x)
        assert logits["fr"].shape[-2:] == (16, 16)  # FR fuses at De1 = 1/4
        assert logits["ppm"].shape[-2:] == (4, 4)  # De4 at OS16
        up = F.interpolate(logits["ppm"], size=(16, 16), mode="bilinear", align_corners=False)
        assert torch.allclose(logits["out"], 0.4 * logits["fr"] + up, atol=1e-5)
        out = r18(x)
    assert out.shape == (1, 19, 64, 64)


@pytest.mark.parametrize(
    ("fr_inputs", "fr_resolution", "channels", "stride"),
    [
        (["De3", "De1"], "De1", 16 + 64, 4),
        (["De3"], "De1", 64, 4),
        (["De3", "De2"], "De3", 32 + 64, 16),
        (["De3", "De2", "De1"], "De1", 16 + 32 + 64, 4),
        (["De1", "De3"], "De3", 16 + 64, 16),
    ],
)
def test_fr_variants(fr_inputs: list[str], fr_resolution: str, channels: int, stride: int) -> None:
    model = build_model(
        "dbmsnet_r18_os16", num_classes=3, width=0.25, fr_inputs=fr_inputs, fr_resolution=fr_resolution
    ).eval()
    assert model.fr is not None
    assert model.fr.proj[0].in_channels == channels
    with torch.no_grad():
        logits = model.forward_logits(torch.randn(1, 3, 64, 64))
        assert logits["fr"].shape[-2:] == (64 // stride, 64 // stride)
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_mdm_ablation_switches() -> None:
    model = build_model(
        "dbmsnet_r18_os16",
        width=0.25,
        mdm_blocks=["S", "L"],
        dilations_s=[1, 2, 3, 5],
        dilations_l=[13, 16, 18, 20],
        mdm_pool_channels=0,
        mdm_attention=True,
        ddc_reduce_kernel=3,
    )
    mdm = model.mdm
    assert list(mdm.blocks) == ["S", "L"]
    assert mdm.blocks["L"].dilations == (13, 16, 18, 20) and mdm.blocks["S"].dilations == (1, 2, 3, 5)
    assert mdm.pool is None and mdm.out_channels == 320 and mdm.attention is not None
    assert mdm.blocks["S"].reduce[0].kernel_size == (3, 3)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 48)).shape == (1, 19, 32, 48)


def test_single_branch_models() -> None:
    psp = build_model("pspnet_r50vd_os16", pp_out=1024, backbone="resnet18", width=0.25)
    assert psp.fr is None and psp.mdm is None and psp.psp is not None
    assert psp.psp.bottleneck[0].out_channels == 1024
    fr_only = build_model("dbmsnet_r18_os16", width=0.25, branches=["fr"])
    assert fr_only.psp is None and fr_only.backbone is not None
    # The FR-only model never needs layer4.
    assert fr_only._stage_indices == [0, 2]
    with torch.no_grad():
        for m in (psp.eval(), fr_only.eval()):
            logits = m.forward_logits(torch.randn(1, 3, 32, 32))
            branch = "ppm" if m is psp else "fr"
            assert torch.equal(logits["out"], logits[branch])


def test_aux_loss_outputs() -> None:
    model = build_model("dbmsnet_r18_os16", width=0.25, aux_loss=True, branch_weights=[0.5, 0.8]).train()
    assert model.aux_weights == {"fr": 0.5, "ppm": 0.8}
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == {"out", "fr", "ppm"}
    assert all(v.shape == (2, 19, 32, 32) for v in out.values())
    with pytest.raises(EdgesegError, match="aux_loss"):
        build_model("pspnet_r50vd_os16", aux_loss=True)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"fr_inputs": ["De5"]}, "fr_inputs"),
        ({"branches": []}, "branches"),
        ({"dilations_s": [1, 2, 3]}, "dilations_s"),
        ({"fr_channels": 330}, "fr_channels"),
        ({"backbone": "vgg16"}, "backbone"),
        ({"output_stride": 4}, "output_stride"),
        ({"ddc_reduce_kernel": 5}, "ddc_reduce_kernel"),
        ({"mdm_blocks": ["S", "X"]}, "mdm_blocks"),
    ],
)
def test_bad_config_values(overrides: dict, match: str) -> None:
    with pytest.raises(EdgesegError, match=match):
        build_model("dbmsnet_r18_os16", **overrides)


def test_fuse_requires_eval(r18: DBMSNet) -> None:
    r18.train()
    with pytest.raises(EdgesegError, match="eval"):
        r18.fuse()
