"""Foreign ImageNet weights (torchvision / timm / PaddleSeg names) land in the right tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models import build_model, load_backbone_weights
from edgeseg.models.backbones import create_backbone


def _numbered(like: torch.Tensor, seed: int) -> torch.Tensor:
    """A tensor shaped like ``like`` whose values identify it (no two foreign tensors are equal)."""
    g = torch.Generator().manual_seed(seed)
    if not like.is_floating_point():  # BatchNorm's num_batches_tracked
        return torch.randint(1, 1000, like.shape, generator=g, dtype=like.dtype)
    return torch.randn(like.shape, generator=g)


@pytest.mark.parametrize(
    ("backbone", "key", "shape"),
    [
        # torchvision resnet50 names and shapes.
        ("resnet50", "conv1.weight", (64, 3, 7, 7)),
        ("resnet50", "layer1.0.downsample.0.weight", (256, 64, 1, 1)),
        ("resnet50", "layer3.5.bn3.running_var", (1024,)),
        ("resnet50", "layer4.2.conv2.weight", (512, 512, 3, 3)),
        # timm resnet50d names and shapes (deep stem, avg-pool shortcut).
        ("resnet50vd", "conv1.0.weight", (32, 3, 3, 3)),
        ("resnet50vd", "conv1.4.running_mean", (32,)),
        ("resnet50vd", "conv1.6.weight", (64, 32, 3, 3)),
        ("resnet50vd", "bn1.weight", (64,)),
        ("resnet50vd", "layer2.0.downsample.1.weight", (512, 256, 1, 1)),
        ("resnet50vd", "layer2.0.downsample.2.bias", (512,)),
        # torchvision vgg16 / vgg16_bn feature indices.
        ("vgg16", "features.28.weight", (512, 512, 3, 3)),
        ("vgg16_bn", "features.41.running_mean", (512,)),
    ],
)
def test_backbone_keys_are_the_foreign_names(backbone: str, key: str, shape: tuple[int, ...]) -> None:
    with torch.device("meta"):
        sd = create_backbone(backbone).state_dict()
    assert tuple(sd[key].shape) == shape


def _resnet_foreign(model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision/timm ResNet state dict: our backbone names + the ImageNet classifier."""
    sd = {k: _numbered(v, i) for i, (k, v) in enumerate(model.backbone.state_dict().items())}
    width = model.backbone.feature_info[-1].num_chs
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, width), torch.randn(1000)
    return sd


@pytest.mark.parametrize(("source", "backbone"), [("torchvision", "resnet18"), ("timm", "resnet18vd")])
def test_resnet_weights_land_in_place(source: str, backbone: str) -> None:
    model = build_model("dbmsnet_r18_os16", backbone=backbone, width=0.25)
    foreign = {f"module.{k}": v for k, v in _resnet_foreign(model).items()}  # DataParallel prefix
    report = load_backbone_weights(model, foreign, source=source)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == ["module.fc.bias", "module.fc.weight"]
    ours = model.state_dict()
    for key, value in foreign.items():
        if ".fc." not in key:
            assert torch.equal(ours["backbone." + key.removeprefix("module.")], value), key
    assert len(report.loaded) == len(foreign) - 2


def _paddle_resnet18vd(backbone: nn.Module) -> dict[str, tuple[str, torch.Tensor]]:
    """PaddleSeg ResNet18_vd names for every tensor, built from the block structure → (our key, value)."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    sd = backbone.state_dict()
    seed = 0

    def conv_bn(paddle: str, conv: str, bn: str) -> None:
        nonlocal seed
        pairs = [("_conv.weight", f"{conv}.weight")] + [
            (f"_batch_norm.{p}", f"{bn}.{q}")
            for p, q in [
                ("weight", "weight"),
                ("bias", "bias"),
                ("_mean", "running_mean"),
                ("_variance", "running_var"),
            ]
        ]
        for p, q in pairs:
            seed += 1
            out[f"{paddle}.{p}"] = (q, _numbered(sd[q], seed))

    conv_bn("conv1_1", "conv1.0", "conv1.1")
    conv_bn("conv1_2", "conv1.3", "conv1.4")
    conv_bn("conv1_3", "conv1.6", "bn1")
    for s in range(4):
        for i, block in enumerate(getattr(backbone, f"layer{s + 1}")):
            prefix = f"layer{s + 1}.{i}"
            conv_bn(f"bb_{s}_{i}.conv0", f"{prefix}.conv1", f"{prefix}.bn1")
            conv_bn(f"bb_{s}_{i}.conv1", f"{prefix}.conv2", f"{prefix}.bn2")
            if block.downsample is not None:
                conv_bn(f"bb_{s}_{i}.short", f"{prefix}.downsample.1", f"{prefix}.downsample.2")
    return out


def test_paddleseg_resnet_vd_weights_land_in_place() -> None:
    backbone = create_backbone("resnet18vd", output_stride=16, width=0.25)
    paddle = _paddle_resnet18vd(backbone)
    report = load_backbone_weights(backbone, {k: v for k, (_, v) in paddle.items()}, source="paddleseg")
    assert report.missing == [] and report.unexpected == [] and report.ignored == []
    ours = backbone.state_dict()
    for key, (target, value) in paddle.items():
        assert torch.equal(ours[target], value), key


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_vgg_classifier_becomes_fc6_fc7(source: str) -> None:
    model = build_model("fcn8s_vgg16", fc_channels=8)
    foreign = {k: _numbered(v, i) for i, (k, v) in enumerate(model.backbone.state_dict().items())}
    if source == "torchvision":
        fc6, fc7 = torch.randn(8, 512 * 7 * 7), torch.randn(8, 8)
        names = {"fc6": "classifier.0", "fc7": "classifier.3", "cls": "classifier.6"}
    else:
        fc6, fc7 = torch.randn(8, 512, 7, 7), torch.randn(8, 8, 1, 1)
        names = {"fc6": "pre_logits.fc1", "fc7": "pre_logits.fc2", "cls": "head.fc"}
    foreign |= {
        f"{names['fc6']}.weight": fc6,
        f"{names['fc6']}.bias": torch.randn(8),
        f"{names['fc7']}.weight": fc7,
        f"{names['fc7']}.bias": torch.randn(8),
        f"{names['cls']}.weight": torch.randn(1000, 8),
        f"{names['cls']}.bias": torch.randn(1000),
    }
    report = load_backbone_weights(model, foreign, source=source)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == [f"{names['cls']}.bias", f"{names['cls']}.weight"]
    w6 = model.head.fc6.weight
    # Linear input index c*49 + i*7 + j (flattened C, H, W) is conv weight [o, c, i, j].
    assert torch.equal(w6[3, 100, 2, 5], fc6.reshape(8, -1)[3, 100 * 49 + 2 * 7 + 5])
    assert torch.equal(model.head.fc7.weight.flatten(), fc7.flatten())
    assert torch.equal(model.head.fc6.bias, foreign[f"{names['fc6']}.bias"])
    assert torch.equal(model.backbone.features[0].weight, foreign["features.0.weight"])


def test_vgg_head_weights_are_ignored_by_a_bare_backbone() -> None:
    vgg = create_backbone("vgg16")
    foreign = dict(vgg.state_dict())
    foreign["classifier.0.weight"] = torch.zeros(4, 25088)
    report = load_backbone_weights(vgg, foreign)
    assert report.ignored == ["classifier.0.weight"] and report.missing == []


def test_mismatches_are_reported() -> None:
    model = build_model("dbmsnet_r18_os16", width=0.25)
    plain = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    broken = dict(plain)
    broken["layer9.0.conv1.weight"] = broken.pop("layer1.0.conv1.weight")
    with pytest.raises(
        EdgesegError, match=r"missing \(backbone.layer1.0.conv1.weight\).*unexpected \(layer9"
    ):
        load_backbone_weights(model, broken)
    report = load_backbone_weights(model, broken, strict=False)
    assert report.unexpected == ["layer9.0.conv1.weight"]
    assert report.missing == ["backbone.layer1.0.conv1.weight"]
    assert "backbone.layer1.0.bn1.weight" in report.loaded
    # torchvision-style (plain) weights into a vd model: the shortcut layouts differ.
    vd = build_model("dbmsnet_r18_os16", backbone="resnet18vd", width=0.25)
    with pytest.raises(
        EdgesegError, match=r"do not fit the ResNet backbone.*layer2\.0\.downsample\.1\.weight"
    ):
        load_backbone_weights(vd, plain)
    # A different width is a shape error naming the tensor.
    wide = build_model("dbmsnet_r18_os16", width=0.5)
    with pytest.raises(EdgesegError, match=r"do not fit the ResNet backbone.*conv1\.weight"):
        load_backbone_weights(wide, plain)
    with pytest.raises(EdgesegError, match="unknown weight source"):
        load_backbone_weights(model, plain, source="caffe")
