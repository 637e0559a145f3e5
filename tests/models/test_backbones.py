"""VGG and ResNet backbones: feature_info against real outputs, output strides, vd structure, width."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models.backbones import create_backbone
from edgeseg.models.resnet import BasicBlock, Bottleneck, ResNet
from edgeseg.models.vgg import VGG


def _check_feature_info(backbone: nn.Module, hw: tuple[int, int] = (32, 32)) -> list[torch.Tensor]:
    backbone.eval()
    with torch.no_grad():
        feats = backbone.forward_intermediates(torch.randn(1, 3, *hw))
    info = backbone.feature_info
    assert len(feats) == len(info)
    for f, stage in zip(feats, info, strict=True):
        assert f.shape[1] == stage.num_chs, stage
        assert f.shape[-2:] == (hw[0] // stage.reduction, hw[1] // stage.reduction), stage
        assert backbone.get_submodule(stage.module) is not None
    return feats


@pytest.mark.parametrize("name", ["vgg16", "vgg19_bn"])
def test_vgg_feature_info(name: str) -> None:
    vgg = create_backbone(name)
    assert isinstance(vgg, VGG)
    _check_feature_info(vgg)
    assert vgg.feature_info.names() == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert vgg.feature_info.channels() == [64, 128, 256, 512, 512]
    convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == (13 if name == "vgg16" else 16)
    assert any(isinstance(m, nn.BatchNorm2d) for m in vgg.features) == name.endswith("_bn")
    # Each stage module is the max-pool that ends it.
    assert all(isinstance(vgg.get_submodule(m), nn.MaxPool2d) for m in vgg.feature_info.module_names())


@pytest.mark.parametrize(
    ("name", "output_stride", "reductions", "channels"),
    [
        ("resnet18", 32, [4, 8, 16, 32], [64, 128, 256, 512]),
        ("resnet34vd", 16, [4, 8, 16, 16], [64, 128, 256, 512]),
        ("resnet50vd", 16, [4, 8, 16, 16], [256, 512, 1024, 2048]),
        ("resnet50", 8, [4, 8, 8, 8], [256, 512, 1024, 2048]),
    ],
)
def test_resnet_feature_info_and_output_stride(
    name: str, output_stride: int, reductions: list[int], channels: list[int]
) -> None:
    net = create_backbone(name, output_stride=output_stride)
    _check_feature_info(net)
    assert net.feature_info.reductions() == reductions
    assert net.feature_info.channels() == channels
    assert net.feature_info.names() == ["De1", "De2", "De3", "De4"]
    assert net.feature_info.module_names() == ["layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize(
    ("output_stride", "dilations"), [(32, (1, 1, 1, 1)), (16, (1, 1, 1, 2)), (8, (1, 1, 2, 4))]
)
def test_resnet_dilation_replaces_stride(output_stride: int, dilations: tuple[int, ...]) -> None:
    net = create_backbone("resnet50", output_stride=output_stride)
    assert isinstance(net, ResNet)
    assert net.dilations == dilations
    for i, d in enumerate(dilations):
        layer = getattr(net, f"layer{i + 1}")
        for block in layer:
            assert block.conv2.dilation == (d, d) and block.conv2.padding == (d, d)
        # A dilated layer does not downsample.
        expected_stride = 1 if i == 0 or d > 1 else 2
        assert layer[0].conv2.stride == (expected_stride, expected_stride)


def test_resnet_vd_structure() -> None:
    vd = create_backbone("resnet50vd", output_stride=16)
    stem_convs = [m for m in vd.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in stem_convs] == [((3, 3), 32), ((3, 3), 32), ((3, 3), 64)]
    assert stem_convs[0].stride == (2, 2)
    # Downsampling shortcut: avg-pool then a stride-1 1x1 conv; in the dilated layer4 no pool.
    ds2 = vd.layer2[0].downsample
    assert isinstance(ds2[0], nn.AvgPool2d) and ds2[1].stride == (1, 1) and ds2[1].kernel_size == (1, 1)
    assert isinstance(vd.layer4[0].downsample[0], nn.Identity)
    plain = create_backbone("resnet50")
    assert isinstance(plain.conv1, nn.Conv2d) and plain.conv1.kernel_size == (7, 7)
    assert plain.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize(
    ("name", "block", "layers"),
    [
        ("resnet34", BasicBlock, (3, 4, 6, 3)),
        ("resnet101vd", Bottleneck, (3, 4, 23, 3)),
        ("resnet152", Bottleneck, (3, 8, 36, 3)),
    ],
)
def test_resnet_depths(name: str, block: type, layers: tuple[int, ...]) -> None:
    net = create_backbone(name)
    assert tuple(len(getattr(net, f"layer{i + 1}")) for i in range(4)) == layers
    assert all(isinstance(b, block) for b in net.layer3)


def test_width_multiplier_scales_channels() -> None:
    net = create_backbone("resnet18", output_stride=16, width=0.5)
    assert net.feature_info.channels() == [32, 64, 128, 256]
    _check_feature_info(net, (32, 64))
    full = sum(p.numel() for p in create_backbone("resnet18").parameters())
    half = sum(p.numel() for p in net.parameters())
    assert 0.2 < half / full < 0.3  # conv weights scale with width²


def test_forward_intermediates_stops_after_deepest_requested() -> None:
    net = create_backbone("resnet18").eval()
    called = []
    net.layer4.register_forward_hook(lambda *_: called.append("layer4"))
    with torch.no_grad():
        de1, de3 = net.forward_intermediates(torch.randn(1, 3, 32, 32), [0, 2])
    assert de1.shape[1] == 64 and de3.shape[1] == 256
    assert called == []


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("resnet51", {}), ("vgg11", {}), ("vgg16", {"output_stride": 16}), ("resnet18", {"output_stride": 4})],
)
def test_bad_backbone_requests(name: str, kwargs: dict) -> None:
    with pytest.raises(EdgesegError):
        create_backbone(name, **kwargs)
