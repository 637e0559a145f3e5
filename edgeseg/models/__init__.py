"""The model zoo: VGG/ResNet backbones, FCN, FPN-FCN, PSPNet-style and DBMSNet heads, and presets.

Public entry points::

    build_model(preset, num_classes=19, **overrides) -> nn.Module
    list_models(pattern=None) -> list[str]
    load_backbone_weights(model, state_dict, source="torchvision") -> WeightLoadReport

Every model has ``.config`` (its family's dataclass) and ``.aux_weights``; in eval mode it returns
logits (N, K, H, W) at input resolution, in train mode ``{"out": ..., **aux}``. Importing this
package imports every model module, which registers the presets.
"""

# Imported for their @register_model side effect.
from edgeseg.models import dbmsnet, fcn, fpn_fcn  # noqa: F401
from edgeseg.models._registry import build_model, list_models, register_model
from edgeseg.models.weights import WeightLoadReport, load_backbone_weights

__all__ = ["WeightLoadReport", "build_model", "list_models", "load_backbone_weights", "register_model"]
