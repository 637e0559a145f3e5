"""ResNet-18/34/50/101/152 backbones, standard and "vd", with output stride 32 / 16 / 8.

* Standard: He et al., "Deep Residual Learning for Image Recognition" (https://arxiv.org/abs/1512.03385),
  with the stride on the 3×3 conv of the bottleneck (torchvision's "v1.5").
* "vd" (He et al., "Bag of Tricks for Image Classification", https://arxiv.org/abs/1812.01187,
  ResNet-D; PaddleSeg's ``ResNet_vd``): a deep stem of three 3×3 convs (32-32-64) instead of one
  7×7, and an average pool before the 1×1 projection in downsampling shortcuts.
* Output stride 16 / 8 replaces the stride of layer4 (and layer3) by dilation 2 (and 4) in every
  block of that layer, as DeepLab and PaddleSeg's ``ResNet_vd`` (the DBMSNet paper's framework) do.
  torchvision and timm keep the previous dilation in a dilated layer's first block; the weights
  are interchangeable either way, only that block's receptive field differs.

Submodule names follow torchvision (``conv1``, ``bn1``, ``layer1``..``layer4``, ``downsample``) and,
for the deep stem and the avg-pool shortcut, timm's ``resnet50d`` (``conv1.0``/``.1``/``.3``/``.4``/
``.6``; ``downsample.1``/``.2``), because they are the checkpoint format.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models._features import FeatureInfo, StageInfo
from edgeseg.models.layers import init_weights

__all__ = ["RESNET_NAMES", "BasicBlock", "Bottleneck", "ResNet", "create_resnet"]


def _conv3x3(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34).

    Args:
        in_channels: input channels.
        channels: width of the block (output = ``channels * expansion``).
        stride: stride of the first conv.
        dilation: dilation of both convs.
        downsample: projection for the shortcut, or None for identity.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride=stride, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 convs with a residual connection (ResNet-50/101/152).

    Args:
        in_channels: input channels.
        channels: width of the 3×3 conv (output = ``channels * expansion``).
        stride: stride of the 3×3 conv.
        dilation: dilation of the 3×3 conv.
        downsample: projection for the shortcut, or None for identity.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride=stride, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _downsample(in_channels: int, out_channels: int, *, stride: int, avg_down: bool) -> nn.Sequential:
    if not avg_down:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    # "vd": average the 2×2 neighbourhood instead of dropping 3 of 4 pixels with a strided 1×1 conv.
    # In a dilated layer the shortcut keeps the resolution, so there is nothing to pool; the
    # Identity keeps the key names (downsample.1 / .2) the same in every layer.
    pool: nn.Module = (
        nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    )
    return nn.Sequential(
        pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
    )


def _make_layer(
    block: type[BasicBlock | Bottleneck],
    in_channels: int,
    channels: int,
    num_blocks: int,
    *,
    stride: int,
    dilation: int,
    avg_down: bool,
) -> nn.Sequential:
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = _downsample(in_channels, out_channels, stride=stride, avg_down=avg_down)
    blocks = [block(in_channels, channels, stride=stride, dilation=dilation, downsample=downsample)]
    blocks += [block(out_channels, channels, dilation=dilation) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """ResNet feature extractor: stem, then ``layer1``..``layer4`` = stages ``De1``..``De4``.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the four layers.
        deep_stem: three 3×3 convs (``stem_width``, ``stem_width``, ``64·width``) instead of one 7×7.
        avg_down: average-pool before the 1×1 projection in downsampling shortcuts ("vd").
        output_stride: 32, 16 (layer4 dilated ×2) or 8 (layer3 ×2, layer4 ×4).
        width: channel multiplier for the stem and every layer (1.0 = the paper's 64..512 widths).
        stem_width: channels of the first two deep-stem convs before ``width``. Defaults to 32.
        in_channels: image channels. Defaults to 3.
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        deep_stem: bool = False,
        avg_down: bool = False,
        output_stride: int = 32,
        width: float = 1.0,
        stem_width: int = 32,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise EdgesegError(f"ResNet output_stride must be 8, 16 or 32, got {output_stride}")
        if width <= 0:
            raise EdgesegError(f"ResNet width must be > 0, got {width}")
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        stem_out = widths[0]
        if deep_stem:
            sw = max(1, round(stem_width * width))
            self.conv1: nn.Module = nn.Sequential(
                _conv3x3(in_channels, sw, stride=2),
                nn.BatchNorm2d(sw),
                nn.ReLU(inplace=True),
                _conv3x3(sw, sw),
                nn.BatchNorm2d(sw),
                nn.ReLU(inplace=True),
                _conv3x3(sw, stem_out),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_out, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        dilated = {32: 0, 16: 1, 8: 2}[output_stride]  # how many of the last layers trade stride
        strides = [1, 2, 2, 2]
        dilations = [1, 1, 1, 1]
        for i in range(dilated):
            strides[3 - i] = 1
            dilations[3 - i] = 2 ** (dilated - i)
        stages = []
        channels_in, reduction = stem_out, 4
        for i, (num_blocks, ch) in enumerate(zip(layers, widths, strict=True)):
            layer = _make_layer(
                block,
                channels_in,
                ch,
                num_blocks,
                stride=strides[i],
                dilation=dilations[i],
                avg_down=avg_down,
            )
            self.add_module(f"layer{i + 1}", layer)
            channels_in = ch * block.expansion
            reduction *= strides[i]
            stages.append(StageInfo(f"De{i + 1}", channels_in, reduction, f"layer{i + 1}"))
        self.feature_info = FeatureInfo(stages)
        self.dilations = tuple(dilations)
        init_weights(self)

    def forward_stem(self, x: Tensor) -> Tensor:
        """Stem: conv(s), BN, ReLU and max-pool (1/4 resolution)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_intermediates(self, x: Tensor, indices: Sequence[int] | None = None) -> list[Tensor]:
        """Run the backbone and return the requested stage outputs.

        Args:
            x: images (N, 3, H, W).
            indices: stage indices into :attr:`feature_info` (0 = ``De1``). Defaults to all four;
                layers after the deepest requested one are not run.

        Returns:
            The requested stage outputs, in the order of ``indices``.
        """
        wanted = list(range(len(self.feature_info))) if indices is None else list(indices)
        outputs: dict[int, Tensor] = {}
        x = self.forward_stem(x)
        for i in range(max(wanted) + 1):
            x = getattr(self, f"layer{i + 1}")(x)
            outputs[i] = x
        return [outputs[i] for i in wanted]

    def forward(self, x: Tensor) -> list[Tensor]:
        """All four stage outputs ``[De1, De2, De3, De4]``."""
        return self.forward_intermediates(x)


_ARCHS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}

RESNET_NAMES = tuple(n + suffix for n in _ARCHS for suffix in ("", "vd"))


def create_resnet(name: str, *, output_stride: int = 32, width: float = 1.0) -> ResNet:
    """Build a ResNet backbone by name.

    Args:
        name: ``resnet{18,34,50,101,152}`` or the same with a ``vd`` suffix (``resnet50vd``).
        output_stride: 32, 16 or 8.
        width: channel multiplier. Defaults to 1.0.

    Raises:
        EdgesegError: unknown name or bad output stride.
    """
    vd = name.endswith("vd")
    base = name[:-2] if vd else name
    if base not in _ARCHS:
        raise EdgesegError(f"unknown ResNet backbone {name!r}; choose from {', '.join(RESNET_NAMES)}")
    block, layers = _ARCHS[base]
    return ResNet(
        block=block, layers=layers, deep_stem=vd, avg_down=vd, output_stride=output_stride, width=width
    )
