"""The model zoo: VGG/ResNet backbones, FCN, FPN-FCN, PSPNet-style and DBMSNet heads, and presets.

Public entry points::

    build_model(preset, num_classes=19, **overrides) -> nn.Module
    list_models(pattern=None) -> list[str]

Importing this package imports every model module, which registers the presets.
"""

from edgeseg.models import dbmsnet  # noqa: F401  (registers presets)
from edgeseg.models._registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
