"""Load foreign (torchvision, timm, PaddleSeg-converted) ImageNet weights into the zoo's backbones.

No weights are downloaded here: the user passes a state dict they already have. Key mapping:

ResNet (target keys ``conv1``, ``bn1``, ``layer{1..4}.{i}.conv{1..3}/bn{1..3}``, ``downsample``):

* ``torchvision`` (``resnet50``...): identical names (``downsample.0``/``.1``); ``fc.*`` is ignored.
* ``timm`` (``resnet50``, ``resnet50d``...): identical names; the ``d`` variants' deep stem is
  ``conv1.0/.1/.3/.4/.6`` + ``bn1`` and their avg-pool shortcut ``downsample.1``/``.2``, as ours
  (``resnetXXd`` = our ``resnetXXvd``); ``fc.*`` is ignored.
* ``paddleseg`` (``ResNet50_vd`` converted to a torch state dict, names kept):
  ``conv1_1/2/3._conv`` → ``conv1.0/.3/.6``; ``conv1_1/2._batch_norm`` → ``conv1.1/.4``,
  ``conv1_3._batch_norm`` → ``bn1``; ``bb_{s}_{i}.conv{0,1,2}`` → ``layer{s+1}.{i}.conv{1,2,3}`` /
  ``bn{1,2,3}``; ``bb_{s}_{i}.short`` → ``downsample.1`` (conv) / ``.2`` (BN); BN ``_mean`` /
  ``_variance`` → ``running_mean`` / ``running_var``.

VGG (target keys ``features.N`` as torchvision; FCN heads ``head.fc6`` / ``head.fc7``):

* ``torchvision``: ``features.*`` identical; ``classifier.0`` (Linear 25088→4096) → ``head.fc6``
  reshaped to a 7×7 conv, ``classifier.3`` → ``head.fc7`` reshaped to 1×1 (Long et al.'s
  "convolutionalization"); ``classifier.6`` (1000 classes) is ignored.
* ``timm``: ``features.*`` identical; ``pre_logits.fc1`` / ``.fc2`` → ``head.fc6`` / ``.fc7``;
  ``head.fc`` is ignored.

A ``module.`` prefix (DataParallel) is stripped. Shapes must match (a different depth or width is
an error naming the keys); fc6/fc7 load only into a model that has them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models.resnet import ResNet
from edgeseg.models.vgg import VGG

__all__ = ["SOURCES", "WeightLoadReport", "load_backbone_weights", "map_foreign_key"]

SOURCES = ("torchvision", "timm", "paddleseg")
_IGNORE = ""  # mapped to nothing on purpose (an ImageNet classifier)


@dataclass
class WeightLoadReport:
    """What :func:`load_backbone_weights` did.

    Attributes:
        loaded: target keys that received a tensor.
        missing: backbone keys of the target that the state dict did not provide.
        unexpected: foreign keys that map to nothing in the target.
        ignored: foreign keys skipped on purpose (ImageNet classifier; fc6/fc7 for a bare backbone).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts, plus the first few missing / unexpected keys."""

        def first(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")

        parts = [f"{len(self.loaded)} loaded", f"{len(self.ignored)} ignored"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({first(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({first(self.unexpected)})")
        return "; ".join(parts)


_BN_PARAMS = {"_mean": "running_mean", "_variance": "running_var", "weight": "weight", "bias": "bias"}
_STEM = {"1": ("conv1.0", "conv1.1"), "2": ("conv1.3", "conv1.4"), "3": ("conv1.6", "bn1")}


def _paddleseg_resnet(key: str) -> str | None:
    m = re.fullmatch(r"conv1_([123])\._(conv|batch_norm)\.(\w+)", key)
    if m:
        conv, bn = _STEM[m[1]]
        return _conv_or_bn(conv, bn, m[2], m[3])
    m = re.fullmatch(r"bb_(\d+)_(\d+)\.(conv[012]|short)\._(conv|batch_norm)\.(\w+)", key)
    if m:
        block = f"layer{int(m[1]) + 1}.{m[2]}"
        if m[3] == "short":
            conv, bn = f"{block}.downsample.1", f"{block}.downsample.2"
        else:
            n = int(m[3][-1]) + 1
            conv, bn = f"{block}.conv{n}", f"{block}.bn{n}"
        return _conv_or_bn(conv, bn, m[4], m[5])
    return None


def _conv_or_bn(conv: str, bn: str, kind: str, param: str) -> str | None:
    if kind == "conv":
        return f"{conv}.{param}" if param == "weight" else None
    return f"{bn}.{_BN_PARAMS[param]}" if param in _BN_PARAMS else None


def _resnet_key(key: str, source: str) -> str | None:
    if source == "paddleseg":
        return _paddleseg_resnet(key)
    return _IGNORE if key.startswith("fc.") else key


_VGG_HEAD = {
    "torchvision": {"classifier.0": "head.fc6", "classifier.3": "head.fc7", "classifier.6": _IGNORE},
    "timm": {"pre_logits.fc1": "head.fc6", "pre_logits.fc2": "head.fc7", "head.fc": _IGNORE},
}


def _vgg_key(key: str, source: str) -> str | None:
    if key.startswith("features."):
        return key
    prefix, _, param = key.rpartition(".")
    if prefix in _VGG_HEAD.get(source, {}):
        target = _VGG_HEAD[source][prefix]
        return f"{target}.{param}" if target else _IGNORE
    return None


def map_foreign_key(key: str, *, family: str, source: str) -> str | None:
    """Translate one foreign state-dict key to the zoo's naming.

    Args:
        key: foreign key, e.g. ``"classifier.0.weight"`` or ``"bb_0_0.conv0._conv.weight"``.
        family: ``"vgg"`` or ``"resnet"``.
        source: one of :data:`SOURCES`.

    Returns:
        The backbone-relative key (``head.*`` keys are relative to the whole model), ``""`` for a
        key that is deliberately dropped (an ImageNet classifier), or None for an unknown key.
    """
    key = key.removeprefix("module.")
    mapper: Callable[[str, str], str | None] = _vgg_key if family == "vgg" else _resnet_key
    return mapper(key, source)


def load_backbone_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "torchvision", strict: bool = True
) -> WeightLoadReport:
    """Copy a foreign ImageNet state dict into a zoo model's backbone (and FCN fc6/fc7 where present).

    Args:
        model: a zoo model (anything with a ``backbone`` attribute) or a bare VGG / ResNet backbone.
        state_dict: the foreign weights, e.g. ``torch.load("resnet50-0676ba61.pth")``.
        source: naming scheme of ``state_dict``: ``"torchvision"``, ``"timm"`` or ``"paddleseg"``.
        strict: raise if a backbone key is left unfilled or a foreign key has no place.

    Returns:
        A :class:`WeightLoadReport`; the model's tensors are updated in place.

    Raises:
        EdgesegError: unknown source, a model without a VGG/ResNet backbone, shape mismatches, or
            (with ``strict``) missing / unexpected keys; the message lists them.
    """
    if source not in SOURCES:
        raise EdgesegError(f"unknown weight source {source!r}; choose from {', '.join(SOURCES)}")
    backbone = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    if isinstance(backbone, VGG):
        family = "vgg"
    elif isinstance(backbone, ResNet):
        family = "resnet"
    else:
        raise EdgesegError(f"{type(model).__name__} has no VGG or ResNet backbone to load weights into")

    target = model.state_dict()
    report = WeightLoadReport()
    new: dict[str, Tensor] = {}
    mismatched: list[str] = []
    for key, value in state_dict.items():
        mapped = map_foreign_key(key, family=family, source=source)
        if mapped is None:
            report.unexpected.append(key)
            continue
        if mapped == _IGNORE:
            report.ignored.append(key)
            continue
        ours = mapped if mapped.startswith("head.") else prefix + mapped
        if ours not in target:
            # fc6/fc7 offered to a bare backbone (or a head without them) are skipped, not errors.
            (report.ignored if mapped.startswith("head.") else report.unexpected).append(key)
            continue
        want = target[ours].shape
        if value.shape != want:
            # Only the classifier Linear → conv reshape is legitimate (same numbers, new shape).
            if mapped.startswith("head.") and value.numel() == target[ours].numel():
                value = value.reshape(want)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} → {ours} {tuple(want)}")
                continue
        new[ours] = value
        report.loaded.append(ours)
    if mismatched:
        raise EdgesegError(
            f"{len(mismatched)} tensor(s) do not fit the {type(backbone).__name__} backbone "
            f"(another depth or width?): {'; '.join(mismatched[:5])}"
        )
    # Heads (fc6/fc7 included) are optional; only the backbone must be complete.
    report.missing = [
        k for k in target if k.startswith(prefix) and k not in new and not k.endswith("num_batches_tracked")
    ]
    if strict and (report.missing or report.unexpected):
        raise EdgesegError(f"weights from {source} do not fit {type(backbone).__name__}: {report.summary()}")
    model.load_state_dict(new, strict=False)
    return report
