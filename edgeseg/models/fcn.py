"""FCN-32s / FCN-16s / FCN-8s on VGG (Long et al., https://arxiv.org/abs/1411.4038), docs/design.md §3.2.

``pool5`` goes through the convolutionalised classifier (fc6 = 7×7 conv to 4096 with padding 3 +
ReLU + dropout, fc7 = 1×1 conv to 4096 + ReLU) and a 1×1 score conv. FCN-16s adds a 1×1 score of
``pool4`` after a ×2 upsampling, FCN-8s also a score of ``pool3``; the result is upsampled to the
input size. Every upsampling is bilinear interpolation (no transposed conv), resizing to the exact
size of the skip it is added to, so inputs need not be multiples of 32.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import make_config, register_model
from edgeseg.models.layers import init_weights, resize
from edgeseg.models.vgg import VGG_NAMES, create_vgg

__all__ = ["FCN", "FCNConfig", "FCNHead", "create_fcn"]


class FCNHead(nn.Sequential):
    """fc6 (k×k conv, padding k//2) → ReLU → dropout → fc7 (1×1 conv) → ReLU.

    Named ``fc6``/``fc7`` so that VGG classifier weights (torchvision ``classifier.0``/``.3``, timm
    ``pre_logits.fc1``/``.fc2``) load into them reshaped; see :mod:`edgeseg.models.weights`.

    Args:
        in_channels: channels of ``pool5``.
        channels: width of fc6/fc7 (4096 in the paper).
        dropout: dropout probability after fc6 (active in train mode only).
        kernel_size: fc6 kernel size. Defaults to 7.
    """

    def __init__(self, in_channels: int, channels: int, *, dropout: float, kernel_size: int = 7) -> None:
        super().__init__(
            OrderedDict(
                fc6=nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Conv2d(channels, channels, 1),
                relu7=nn.ReLU(inplace=True),
            )
        )


@dataclass
class FCNConfig:
    """Configuration of :class:`FCN`; defaults are FCN-32s on VGG-16 with 19 classes.

    Args:
        num_classes: output classes.
        backbone: ``vgg16``, ``vgg16_bn``, ``vgg19`` or ``vgg19_bn``.
        upsample_stride: 32 (FCN-32s), 16 (FCN-16s, + pool4 skip) or 8 (FCN-8s, + pool3 skip).
        fc_channels: width of fc6/fc7.
        dropout: dropout probability after fc6.
    """

    num_classes: int = 19
    backbone: str = "vgg16"
    upsample_stride: int = 32
    fc_channels: int = 4096
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise EdgesegError(f"FCN num_classes must be >= 1, got {self.num_classes}")
        if self.backbone not in VGG_NAMES:
            raise EdgesegError(f"FCN backbone={self.backbone!r}: choose from {', '.join(VGG_NAMES)}")
        if self.upsample_stride not in (8, 16, 32):
            raise EdgesegError(f"FCN upsample_stride must be 32, 16 or 8, got {self.upsample_stride}")
        if self.fc_channels < 1:
            raise EdgesegError(f"FCN fc_channels must be >= 1, got {self.fc_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise EdgesegError(f"FCN dropout must be in [0, 1), got {self.dropout}")


class FCN(SegmentationModel):
    """Fully convolutional network with optional pool4 / pool3 skips.

    Args:
        config: see :class:`FCNConfig`.
    """

    def __init__(self, config: FCNConfig) -> None:
        super().__init__()
        self.config = config
        self.aux_weights = {}
        self.backbone = create_vgg(config.backbone)
        info = self.backbone.feature_info
        # Deep to shallow: pool5 is scored through fc6/fc7, the skips directly.
        num_skips = {32: 0, 16: 1, 8: 2}[config.upsample_stride]
        self._skips = [info.find(n) for n in ("pool4", "pool3")][:num_skips]
        self._deepest = info.find("pool5")
        self.head = FCNHead(info[self._deepest].num_chs, config.fc_channels, dropout=config.dropout)
        self.score = nn.Conv2d(config.fc_channels, config.num_classes, 1)
        self.score_skips = nn.ModuleList(
            nn.Conv2d(info[i].num_chs, config.num_classes, 1) for i in self._skips
        )
        for m in (self.head, self.score, self.score_skips):
            init_weights(m)

    def forward_logits(self, x: Tensor) -> dict[str, Tensor]:
        indices = [self._deepest, *self._skips]
        pool5, *skips = self.backbone.forward_intermediates(x, indices)
        s = self.score(self.head(pool5))
        for feat, score in zip(skips, self.score_skips, strict=True):
            s = resize(s, feat.shape[-2:]) + score(feat)
        return {"out": s}


def create_fcn(preset: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> FCN:
    """Build an FCN for a preset: ``kwargs`` (user overrides) merged over ``model_args``."""
    return FCN(make_config(FCNConfig, model_args, kwargs, preset))


@register_model
def fcn32s_vgg16(**kwargs: Any) -> FCN:
    """FCN-32s on VGG-16: pool5 scores upsampled ×32."""
    return create_fcn("fcn32s_vgg16", dict(backbone="vgg16", upsample_stride=32), kwargs)


@register_model
def fcn16s_vgg16(**kwargs: Any) -> FCN:
    """FCN-16s on VGG-16: + pool4 scores, then ×16."""
    return create_fcn("fcn16s_vgg16", dict(backbone="vgg16", upsample_stride=16), kwargs)


@register_model
def fcn8s_vgg16(**kwargs: Any) -> FCN:
    """FCN-8s on VGG-16: + pool4 and pool3 scores, then ×8."""
    return create_fcn("fcn8s_vgg16", dict(backbone="vgg16", upsample_stride=8), kwargs)
