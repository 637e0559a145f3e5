"""FPN-FCN: an FCN whose decoder fuses all five VGG stages after a top-down pyramid pass (seed paper 1).

docs/design.md §3.3. A top-down pass first gives the shallow stages semantic information::

    fpn1 = pool5
    fpn_k = conv3x3(pool_{6-k} + conv1x1(up2(fpn_{k-1})))        k = 2..5

(fpn2↔pool4 at 1/16 ... fpn5↔pool1 at 1/2; the 1×1 conv matches the channels of that stage, the
3×3 conv removes upsampling aliasing). Then the FCN upsampling path fuses every level::

    s = score(fc7(fc6(fpn1)))
    s = up2(s) + conv1x1_k(fpn_k)                                 k = 2..5

and a final bilinear ×2 reaches the input size. "up2" resizes bilinearly to the exact size of the
next stage (equal to ×2 for inputs that are multiples of 32), so any input size works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import make_config, register_model
from edgeseg.models.fcn import FCNHead
from edgeseg.models.layers import init_weights, resize
from edgeseg.models.vgg import VGG_NAMES, create_vgg

__all__ = ["FPNFCN", "FPNFCNConfig", "create_fpn_fcn"]


@dataclass
class FPNFCNConfig:
    """Configuration of :class:`FPNFCN`; defaults: VGG-16, 19 classes, fc6/fc7 of width 4096.

    Args:
        num_classes: output classes.
        backbone: ``vgg16`` (the paper's name, default), ``vgg19`` (the four convs per stage it
            describes), or their ``_bn`` variants.
        fc_channels: width of fc6/fc7.
        dropout: dropout probability after fc6.
    """

    num_classes: int = 19
    backbone: str = "vgg16"
    fc_channels: int = 4096
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise EdgesegError(f"FPN-FCN num_classes must be >= 1, got {self.num_classes}")
        if self.backbone not in VGG_NAMES:
            raise EdgesegError(f"FPN-FCN backbone={self.backbone!r}: choose from {', '.join(VGG_NAMES)}")
        if self.fc_channels < 1:
            raise EdgesegError(f"FPN-FCN fc_channels must be >= 1, got {self.fc_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise EdgesegError(f"FPN-FCN dropout must be in [0, 1), got {self.dropout}")


class FPNFCN(SegmentationModel):
    """FCN with a top-down feature pyramid and a five-stage fusion decoder.

    Submodules: ``lateral[k]`` (1×1, fpn_{k+1} channels → pool_{4-k} channels), ``smooth[k]`` (3×3),
    ``score_fpn[k]`` (1×1 → classes) for k = 0..3 ↔ fpn2..fpn5.

    Args:
        config: see :class:`FPNFCNConfig`.
    """

    def __init__(self, config: FPNFCNConfig) -> None:
        super().__init__()
        self.config = config
        self.aux_weights = {}
        self.backbone = create_vgg(config.backbone)
        chs = self.backbone.feature_info.channels()  # pool1..pool5
        self.head = FCNHead(chs[-1], config.fc_channels, dropout=config.dropout)
        self.score = nn.Conv2d(config.fc_channels, config.num_classes, 1)
        # Level k (fpn_{k+2}) pairs with pool_{4-k} and receives fpn_{k+1}, which has pool_{5-k}'s channels.
        levels = range(len(chs) - 1)
        self.lateral = nn.ModuleList(nn.Conv2d(chs[-1 - k], chs[-2 - k], 1) for k in levels)
        self.smooth = nn.ModuleList(nn.Conv2d(chs[-2 - k], chs[-2 - k], 3, padding=1) for k in levels)
        self.score_fpn = nn.ModuleList(nn.Conv2d(chs[-2 - k], config.num_classes, 1) for k in levels)
        for m in (self.head, self.score, self.lateral, self.smooth, self.score_fpn):
            init_weights(m)

    def forward_logits(self, x: Tensor) -> dict[str, Tensor]:
        pools = self.backbone.forward_intermediates(x)
        fpn = pools[-1]
        s = self.score(self.head(fpn))
        levels = zip(self.lateral, self.smooth, self.score_fpn, strict=True)
        for k, (lateral, smooth, score) in enumerate(levels):
            skip = pools[-2 - k]
            size = skip.shape[-2:]
            # Upsample first, then the 1×1 conv, in the order of docs/design.md §3.3.
            fpn = smooth(skip + lateral(resize(fpn, size)))
            s = resize(s, size) + score(fpn)
        return {"out": s}


def create_fpn_fcn(preset: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> FPNFCN:
    """Build an FPN-FCN for a preset: ``kwargs`` (user overrides) merged over ``model_args``."""
    return FPNFCN(make_config(FPNFCNConfig, model_args, kwargs, preset))


@register_model
def fpnfcn_vgg16(**kwargs: Any) -> FPNFCN:
    """FPN-FCN on VGG-16 (the backbone named in the paper)."""
    return create_fpn_fcn("fpnfcn_vgg16", dict(backbone="vgg16"), kwargs)


@register_model
def fpnfcn_vgg19(**kwargs: Any) -> FPNFCN:
    """FPN-FCN on VGG-19 (four convs in stages 3-5, as the paper's description has)."""
    return create_fpn_fcn("fpnfcn_vgg19", dict(backbone="vgg19"), kwargs)
