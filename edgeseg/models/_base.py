"""``SegmentationModel``: the train/eval output contract shared by every model in the zoo.

Every model is a backbone plus a head that produces one or more logit maps at its own resolution.
This base class turns them into the team contract: in eval mode ``forward`` returns the ``"out"``
logits (N, K, H, W) at input resolution (the only tensor the ONNX export sees); in train mode a
dict with ``"out"`` and the auxiliary logits named in :attr:`aux_weights`, all at input resolution.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from edgeseg.models.layers import resize
from edgeseg.models.resnet import ResNet
from edgeseg.models.vgg import VGG

__all__ = ["SegmentationModel"]


class SegmentationModel(nn.Module):
    """Base class: subclasses set ``backbone``, ``config`` and implement :meth:`forward_logits`.

    Attributes:
        config: the model family's config dataclass.
        aux_weights: loss weight of each auxiliary output key (empty when there is none). The loss
            is ``CE(out) + Σ aux_weights[k] · CE(outputs[k])``.
    """

    config: Any
    backbone: VGG | ResNet
    aux_weights: dict[str, float]

    @property
    def output_stride(self) -> int:
        """Reduction of the backbone's deepest feature map (input size / feature size)."""
        return int(self.backbone.feature_info[-1].reduction)

    def forward_logits(self, x: Tensor) -> dict[str, Tensor]:
        """Logits at the head's own resolution: ``"out"`` plus every key of :attr:`aux_weights`."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """Segment a batch of normalised images.

        Args:
            x: float tensor (N, 3, H, W), already normalised.

        Returns:
            Eval mode: logits (N, K, H, W). Train mode: ``{"out": ..., **aux}``, each (N, K, H, W).
        """
        size = x.shape[-2:]
        logits = self.forward_logits(x)
        if not self.training:
            return resize(logits["out"], size)
        return {k: resize(v, size) for k, v in logits.items() if k == "out" or k in self.aux_weights}
