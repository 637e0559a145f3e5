"""VGG-16 / VGG-19 feature extractors (Simonyan & Zisserman, https://arxiv.org/abs/1409.1556).

Five stages of 3×3 conv (+ optional BN) + ReLU, each ended by a 2×2 max-pool; the pool outputs are
the stages ``pool1``..``pool5`` (1/2 .. 1/32) used by the FCN family. The layers sit in one
``features`` ``nn.Sequential`` laid out exactly like torchvision's ``vgg16``/``vgg16_bn``, so the
indices (``features.0.weight`` ...) are the checkpoint format and torchvision/timm weights load
without renaming. The classifier (fc6/fc7) belongs to the FCN heads, not to the backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models._features import FeatureInfo, StageInfo
from edgeseg.models.layers import init_weights

__all__ = ["VGG", "VGG_LAYOUTS", "VGG_NAMES", "create_vgg"]

# Convs per stage. FPN-FCN's paper says "VGG-16" but describes four convs in stages 3-5 (= VGG-19).
VGG_LAYOUTS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_NAMES = tuple(n + suffix for n in VGG_LAYOUTS for suffix in ("", "_bn"))


class VGG(nn.Module):
    """VGG convolutional trunk exposing ``pool1``..``pool5``.

    Args:
        layout: number of 3×3 convs in each of the five stages.
        batch_norm: insert BatchNorm after every conv (torchvision's ``*_bn`` variants).
        channels: output channels of each stage. Defaults to (64, 128, 256, 512, 512).
        in_channels: image channels. Defaults to 3.
    """

    def __init__(
        self,
        *,
        layout: Sequence[int],
        batch_norm: bool = False,
        channels: Sequence[int] = (64, 128, 256, 512, 512),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        stages = []
        c_in = in_channels
        for i, (num_convs, c_out) in enumerate(zip(layout, channels, strict=True)):
            for _ in range(num_convs):
                layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(nn.MaxPool2d(2, stride=2))
            stages.append(StageInfo(f"pool{i + 1}", c_out, 2 ** (i + 1), f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.feature_info = FeatureInfo(stages)
        self._pool_indices = [int(s.module.split(".")[1]) for s in stages]
        init_weights(self)

    def forward_intermediates(self, x: Tensor, indices: Sequence[int] | None = None) -> list[Tensor]:
        """Run the trunk and return the requested pool outputs.

        Args:
            x: images (N, 3, H, W).
            indices: stage indices into :attr:`feature_info` (0 = ``pool1``). Defaults to all five;
                layers after the deepest requested stage are not run.

        Returns:
            The requested stage outputs, in the order of ``indices``.
        """
        wanted = list(range(len(self.feature_info))) if indices is None else list(indices)
        last = self._pool_indices[max(wanted)]
        stage_of = {idx: i for i, idx in enumerate(self._pool_indices)}
        outputs: dict[int, Tensor] = {}
        for idx, layer in enumerate(self.features):
            x = layer(x)
            if idx in stage_of:
                outputs[stage_of[idx]] = x
            if idx == last:
                break
        return [outputs[i] for i in wanted]

    def forward(self, x: Tensor) -> list[Tensor]:
        """All five stage outputs ``[pool1, ..., pool5]``."""
        return self.forward_intermediates(x)


def create_vgg(name: str) -> VGG:
    """Build a VGG trunk by name: ``vgg16``, ``vgg16_bn``, ``vgg19`` or ``vgg19_bn``.

    Raises:
        EdgesegError: unknown name.
    """
    bn = name.endswith("_bn")
    base = name[:-3] if bn else name
    if base not in VGG_LAYOUTS:
        raise EdgesegError(f"unknown VGG backbone {name!r}; choose from {', '.join(VGG_NAMES)}")
    return VGG(layout=VGG_LAYOUTS[base], batch_norm=bn)
