"""DBMSNet: a double-branch multi-stage network with dense dilated convolution (seed paper 2).

Two branches on a ResNet backbone (docs/design.md §3.4):

* spatial branch: Feature Refine (FR) concatenates shallow and deep stages (``De1`` and upsampled
  ``De3`` by default), a 1×1 conv + BN + ReLU reduces them to 320 channels, the mixed dilation
  module (MDM: stacked :class:`DDCBlock` S→M→L, summed, plus a global-pool branch) refines them, and
  a 1×1 conv classifies;
* semantic branch: PSPNet's pyramid pooling on ``De4`` → 3×3 conv to ``PP_Out`` → 1×1 classifier.

The branch logits are brought to the finer of their two resolutions and merged as
``0.4 · spatial + 1.0 · semantic``, then upsampled to the input size. Every ablation of the paper is
a field of :class:`DBMSNetConfig`.

Choices where the paper is ambiguous (first option of docs/design.md §3.4 unless stated):

* FR fuses at ``De1``'s resolution (paper text), not at ``De3``'s (its parameter table); stages
  finer than the fusion resolution are average-pooled down, coarser ones bilinearly upsampled, and
  they are concatenated shallow to deep.
* The DDC channel reduction is a 1×1 conv (paper text), not k=3 (its table).
* The MDM global-pool branch pools the MDM *input* (like ASPP's image pooling).
* The optional MDM attention, unspecified in the paper, is a squeeze-and-excitation gate on the
  MDM output; it is off by default because the paper found attention hurts.
* The PPM branches have ``De4 channels / len(bins)`` channels (2048 → 512 for ResNet-50, PSPNet's
  rule), since the paper gives only the ResNet-50 value.
* With a single branch its logits are the output unscaled (weights only matter in the merge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.models._base import SegmentationModel
from edgeseg.models._registry import make_config, register_model
from edgeseg.models.layers import ConvNormAct, adaptive_avg_pool2d, channel_shuffle, init_weights, resize
from edgeseg.models.psp import PPMHead
from edgeseg.models.resnet import RESNET_NAMES, create_resnet

__all__ = [
    "DBMSNet",
    "DBMSNetConfig",
    "DDCBlock",
    "FeatureRefine",
    "MixedDilationModule",
    "create_dbmsnet",
]

STAGES = ("De1", "De2", "De3", "De4")
MDM_BLOCKS = ("S", "M", "L")


class DDCBlock(nn.Module):
    """Dense dilation convolution block: reduce, four dilated depthwise branches + pooling, shuffle, add.

    ``forward``: ``r = reduce(x)``; ``ys = [b(r) for b in branches] + [pool(mean(r)).expand_as(r)]``;
    ``y = channel_shuffle(cat(ys, 1), 5) + x``. Steps after ``reduce`` are what the fused custom op
    (:mod:`edgeseg.ops`) replaces at inference, so the submodule names and this order are a contract.

    Args:
        channels: C0, input and output channels; must be divisible by 20 (C0/5 reduced channels in
            4 conv groups).
        dilations: dilations of the four depthwise 3×3 branches (padding = dilation).
        reduce_kernel: kernel size of the grouped reduce conv, 1 (paper text, default) or 3 (table).
    """

    reduction = 5  # α = 1/5: five maps of C0/5 channels concatenate back to C0
    shuffle_groups = 5
    reduce_groups = 4

    def __init__(self, channels: int, dilations: Sequence[int], *, reduce_kernel: int = 1) -> None:
        super().__init__()
        if channels % (self.reduction * self.reduce_groups):
            raise EdgesegError(f"DDC block channels must be divisible by 20, got {channels}")
        if len(dilations) != 4:
            raise EdgesegError(f"DDC block needs 4 dilations, got {tuple(dilations)}")
        reduced = channels // self.reduction
        self.dilations = tuple(int(d) for d in dilations)
        self.reduce = ConvNormAct(channels, reduced, reduce_kernel, groups=self.reduce_groups, act=False)
        self.branches = nn.ModuleList(
            ConvNormAct(reduced, reduced, 3, dilation=d, groups=reduced) for d in self.dilations
        )
        self.pool = ConvNormAct(reduced, reduced, 1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.reduce(x)
        ys = [branch(r) for branch in self.branches]
        ys.append(self.pool(r.mean((2, 3), keepdim=True)).expand_as(r))
        return channel_shuffle(torch.cat(ys, 1), self.shuffle_groups) + x


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al., SENet): global pool → 1×1 → ReLU → 1×1 → sigmoid gate.

    Args:
        channels: input channels.
        reduction: bottleneck ratio. Defaults to 16.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(w)


class MixedDilationModule(nn.Module):
    """MDM: stacked DDC blocks whose outputs are summed (F1), concat a global-pool branch (F2).

    Args:
        channels: C0 of the DDC blocks (320 by default in DBMSNet).
        blocks: ``{name: dilations}`` in stacking order, e.g. ``{"S": (1, 3, 5, 7), ...}``.
        reduce_kernel: DDC reduce conv kernel size.
        pool_channels: channels of the global-pool branch, or 0 to leave it out.
        attention: gate the output with :class:`SqueezeExcite`.
    """

    def __init__(
        self,
        channels: int,
        blocks: dict[str, Sequence[int]],
        *,
        reduce_kernel: int = 1,
        pool_channels: int = 80,
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(
            {name: DDCBlock(channels, d, reduce_kernel=reduce_kernel) for name, d in blocks.items()}
        )
        self.pool = ConvNormAct(channels, pool_channels, 1) if pool_channels else None
        self.out_channels = channels + pool_channels
        self.attention = SqueezeExcite(self.out_channels) if attention else None

    def forward(self, x: Tensor) -> Tensor:
        y = x
        outputs = []
        for block in self.blocks.values():
            y = block(y)
            outputs.append(y)
        # Chained adds (not stack + sum): no copy, and TensorRT fuses element-wise adds.
        out = outputs[0]
        for o in outputs[1:]:
            out = out + o
        if self.pool is not None:
            pooled = self.pool(x.mean((2, 3), keepdim=True))
            out = torch.cat([out, pooled.expand(-1, -1, out.shape[2], out.shape[3])], 1)
        if self.attention is not None:
            out = self.attention(out)
        return out


class FeatureRefine(nn.Module):
    """FR: bring the chosen stages to one resolution, concat shallow to deep, 1×1 conv + BN + ReLU.

    Args:
        in_channels: channels of each chosen stage, shallow to deep.
        out_channels: channels after the 1×1 conv (C0 of the MDM).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.proj = ConvNormAct(sum(in_channels), out_channels, 1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        """Fuse ``features`` (shallow to deep) at spatial ``size``."""
        size = (int(size[0]), int(size[1]))
        resized = []
        for f in features:
            if f.shape[-2] > size[0]:  # finer than the target: area-average down, no aliasing
                f = adaptive_avg_pool2d(f, size)
            resized.append(resize(f, size))
        return self.proj(torch.cat(resized, 1))


@dataclass
class DBMSNetConfig:
    """Configuration of :class:`DBMSNet`; defaults are the paper's (ResNet-50-vd, OS16, 19 classes).

    Args:
        num_classes: output classes.
        backbone: ``resnet{18,34,50,101,152}`` with optional ``vd`` suffix.
        output_stride: backbone output stride, 16 (paper default) or 8 (ablation); 32 also works.
        width: backbone channel multiplier (1.0 = paper widths; 0.5 for small demo models).
        branches: ``("fr", "ppm")`` = both; ``("ppm",)`` = De4(PPM) alone (PSPNet-style);
            ``("fr",)`` = De3\\1(Two) alone.
        fr_inputs: stages fused by FR: ``("De3", "De1")`` (default), ``("De3",)``, ``("De3", "De2")``,
            ``("De3", "De2", "De1")``; concatenated shallow to deep whatever the order given.
        fr_resolution: stage whose resolution FR fuses at: ``"De1"`` (paper text) or ``"De3"``
            (paper table: 32×32×1280 for a 512×512 input).
        fr_channels: C0, channels after FR's 1×1 conv = channels of every DDC block (320).
        ddc_reduce_kernel: kernel of the DDC grouped reduce conv, 1 (text) or 3 (table).
        mdm_blocks: which DDC blocks the MDM stacks, in order; any non-empty subset of S, M, L.
        dilations_s: dilations of block S; (1, 3, 5, 7) (text) or (1, 2, 3, 5) (table).
        dilations_m: dilations of block M; (5, 7, 11, 13) (text) or (5, 7, 9, 11) (table).
        dilations_l: dilations of block L; (13, 15, 17, 19) (text), (11, 13, 15, 17) (table) or
            (13, 16, 18, 20) (ablation text).
        mdm_pool_channels: channels of the MDM global-pool branch F2 (80), 0 switches it off.
        mdm_attention: squeeze-and-excitation gate on the MDM output (off; the paper found it hurts).
        ppm_bins: adaptive pool sizes of the PPM.
        ppm_channels: channels of each PPM branch. Defaults to De4 channels // len(ppm_bins).
        pp_out: channels of the 3×3 conv after the PPM (128; ablation 1024 / 512 / 256).
        branch_weights: weights of (spatial, semantic) logits in the merge and the aux losses.
        aux_loss: in train mode, also return each branch's logits (keys ``"fr"``, ``"ppm"``) for
            auxiliary cross-entropy with the same weights. Needs both branches.
    """

    num_classes: int = 19
    backbone: str = "resnet50vd"
    output_stride: int = 16
    width: float = 1.0
    branches: tuple[str, ...] = ("fr", "ppm")
    fr_inputs: tuple[str, ...] = ("De3", "De1")
    fr_resolution: str = "De1"
    fr_channels: int = 320
    ddc_reduce_kernel: int = 1
    mdm_blocks: tuple[str, ...] = MDM_BLOCKS
    dilations_s: tuple[int, int, int, int] = (1, 3, 5, 7)
    dilations_m: tuple[int, int, int, int] = (5, 7, 11, 13)
    dilations_l: tuple[int, int, int, int] = (13, 15, 17, 19)
    mdm_pool_channels: int = 80
    mdm_attention: bool = False
    ppm_bins: tuple[int, ...] = (1, 2, 3, 6)
    ppm_channels: int | None = None
    pp_out: int = 128
    branch_weights: tuple[float, float] = (0.4, 1.0)
    aux_loss: bool = False

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> EdgesegError:
            return EdgesegError(f"DBMSNet {field}={getattr(self, field)!r}: {why}")

        if self.num_classes < 1:
            raise bad("num_classes", "must be >= 1")
        if self.backbone not in RESNET_NAMES:
            raise bad("backbone", f"choose from {', '.join(RESNET_NAMES)}")
        if self.output_stride not in (8, 16, 32):
            raise bad("output_stride", "must be 8, 16 or 32")
        if self.width <= 0:
            raise bad("width", "must be > 0")
        if not self.branches or len(set(self.branches)) != len(self.branches):
            raise bad("branches", "must be a non-empty list of distinct names 'fr', 'ppm'")
        if set(self.branches) - {"fr", "ppm"}:
            raise bad("branches", "valid names are 'fr' and 'ppm'")
        if (
            not self.fr_inputs
            or set(self.fr_inputs) - set(STAGES)
            or len(set(self.fr_inputs)) != len(self.fr_inputs)
        ):
            raise bad("fr_inputs", f"must be distinct stage names from {STAGES}")
        if self.fr_resolution not in STAGES:
            raise bad("fr_resolution", f"choose from {STAGES}")
        if self.fr_channels <= 0 or self.fr_channels % 20:
            raise bad("fr_channels", "must be a positive multiple of 20 (C0/5 channels in 4 groups)")
        if self.ddc_reduce_kernel not in (1, 3):
            raise bad("ddc_reduce_kernel", "must be 1 or 3")
        if not self.mdm_blocks or set(self.mdm_blocks) - set(MDM_BLOCKS):
            raise bad("mdm_blocks", "must be a non-empty subset of S, M, L")
        if len(set(self.mdm_blocks)) != len(self.mdm_blocks):
            raise bad("mdm_blocks", "names must be distinct")
        for field in ("dilations_s", "dilations_m", "dilations_l"):
            if len(getattr(self, field)) != 4 or min(getattr(self, field)) < 1:
                raise bad(field, "must be 4 positive integers")
        if self.mdm_pool_channels < 0:
            raise bad("mdm_pool_channels", "must be >= 0")
        if not self.ppm_bins or min(self.ppm_bins) < 1:
            raise bad("ppm_bins", "must be positive integers")
        if self.ppm_channels is not None and self.ppm_channels < 1:
            raise bad("ppm_channels", "must be >= 1")
        if self.pp_out < 1:
            raise bad("pp_out", "must be >= 1")
        if self.aux_loss and len(self.branches) < 2:
            raise bad("aux_loss", "auxiliary losses need both branches")


class DBMSNet(SegmentationModel):
    """Double-branch multi-stage network (FR + MDM spatial branch, PPM semantic branch).

    Args:
        config: the architecture; see :class:`DBMSNetConfig`.
    """

    def __init__(self, config: DBMSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = create_resnet(config.backbone, output_stride=config.output_stride, width=config.width)
        info = self.backbone.feature_info
        needed = set()
        self.fr: FeatureRefine | None = None
        self.mdm: MixedDilationModule | None = None
        self.fr_classifier: nn.Conv2d | None = None
        self.psp: PPMHead | None = None
        if "fr" in config.branches:
            # Shallow to deep, whatever order the config lists them in.
            self._fr_indices = sorted(info.find(s) for s in config.fr_inputs)
            self._fr_target = info.find(config.fr_resolution)
            needed |= set(self._fr_indices) | {self._fr_target}
            self.fr = FeatureRefine([info[i].num_chs for i in self._fr_indices], config.fr_channels)
            dilations = {"S": config.dilations_s, "M": config.dilations_m, "L": config.dilations_l}
            self.mdm = MixedDilationModule(
                config.fr_channels,
                {name: dilations[name] for name in config.mdm_blocks},
                reduce_kernel=config.ddc_reduce_kernel,
                pool_channels=config.mdm_pool_channels,
                attention=config.mdm_attention,
            )
            self.fr_classifier = nn.Conv2d(self.mdm.out_channels, config.num_classes, 1)
        if "ppm" in config.branches:
            in_ch = info[-1].num_chs
            needed.add(len(info) - 1)
            self.psp = PPMHead(
                in_ch,
                config.num_classes,
                channels=config.ppm_channels or max(1, in_ch // len(config.ppm_bins)),
                out_channels=config.pp_out,
                bins=config.ppm_bins,
            )
        self._stage_indices = sorted(needed)
        weights = dict(zip(("fr", "ppm"), config.branch_weights, strict=True))
        self.branch_weights = {b: weights[b] for b in config.branches}
        self.aux_weights = dict(self.branch_weights) if config.aux_loss else {}
        for head in (self.fr, self.mdm, self.fr_classifier, self.psp):
            if head is not None:
                init_weights(head)

    def forward_logits(self, x: Tensor) -> dict[str, Tensor]:
        stages = self.backbone.forward_intermediates(x, self._stage_indices)
        feats = dict(zip(self._stage_indices, stages, strict=True))
        logits: dict[str, Tensor] = {}
        if self.fr is not None and self.mdm is not None and self.fr_classifier is not None:
            size = feats[self._fr_target].shape[-2:]
            refined = self.fr([feats[i] for i in self._fr_indices], size)
            logits["fr"] = self.fr_classifier(self.mdm(refined))
        if self.psp is not None:
            logits["ppm"] = self.psp(feats[self._stage_indices[-1]])
        if len(logits) == 1:
            logits["out"] = next(iter(logits.values()))
            return logits
        # Merge at the finer of the two branch resolutions.
        size = max((v.shape[-2:] for v in logits.values()), key=lambda s: s[0] * s[1])
        spatial = resize(logits["fr"], size)
        semantic = resize(logits["ppm"], size)
        w_fr, w_ppm = self.branch_weights["fr"], self.branch_weights["ppm"]
        logits["out"] = w_fr * spatial + w_ppm * semantic
        return logits

    def fuse(self) -> DBMSNet:
        """Replace DDC steps 2-4 with the fused custom op for inference (eval mode only).

        Delegates to :func:`edgeseg.ops.fuse.fuse_model`, imported here because the op's
        extension is only needed (and only built) when fusing.

        Returns:
            The model, fused in place.

        Raises:
            EdgesegError: the model is in train mode.
        """
        if self.training:
            raise EdgesegError("DBMSNet.fuse() works on an eval-mode model; call model.eval() first")
        from edgeseg.ops.fuse import fuse_model

        fuse_model(self)  # swaps the DDC blocks in place
        return self


def create_dbmsnet(preset: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> DBMSNet:
    """Build a DBMSNet for a preset: ``kwargs`` (user overrides) merged over ``model_args``."""
    return DBMSNet(make_config(DBMSNetConfig, model_args, kwargs, preset))


@register_model
def dbmsnet_r50vd_os16(**kwargs: Any) -> DBMSNet:
    """DBMSNet, ResNet-50-vd, output stride 16: the paper's main model (Cityscapes 76.97 mIoU)."""
    return create_dbmsnet("dbmsnet_r50vd_os16", dict(backbone="resnet50vd", output_stride=16), kwargs)


@register_model
def dbmsnet_r50vd_os8(**kwargs: Any) -> DBMSNet:
    """DBMSNet, ResNet-50-vd, output stride 8 (the paper's OS ablation)."""
    return create_dbmsnet("dbmsnet_r50vd_os8", dict(backbone="resnet50vd", output_stride=8), kwargs)


@register_model
def dbmsnet_r101vd_os16(**kwargs: Any) -> DBMSNet:
    """DBMSNet, ResNet-101-vd, output stride 16 (Cityscapes 78.29 mIoU)."""
    return create_dbmsnet("dbmsnet_r101vd_os16", dict(backbone="resnet101vd", output_stride=16), kwargs)


@register_model
def dbmsnet_r152vd_os16(**kwargs: Any) -> DBMSNet:
    """DBMSNet, ResNet-152-vd, output stride 16 (Cityscapes 78.15 mIoU)."""
    return create_dbmsnet("dbmsnet_r152vd_os16", dict(backbone="resnet152vd", output_stride=16), kwargs)


@register_model
def dbmsnet_r50_os16(**kwargs: Any) -> DBMSNet:
    """DBMSNet, plain ResNet-50 (7×7 stem, strided shortcuts), output stride 16."""
    return create_dbmsnet("dbmsnet_r50_os16", dict(backbone="resnet50", output_stride=16), kwargs)


@register_model
def dbmsnet_r18_os16(**kwargs: Any) -> DBMSNet:
    """DBMSNet, plain ResNet-18 (BasicBlocks, 64..512 channels), output stride 16: the CPU-friendly preset.

    ``--set width=0.5`` halves the backbone for a demo checkpoint of a few MB.
    """
    return create_dbmsnet("dbmsnet_r18_os16", dict(backbone="resnet18", output_stride=16), kwargs)


@register_model
def pspnet_r50vd_os16(**kwargs: Any) -> DBMSNet:
    """PSPNet-style baseline: DBMSNet's De4(PPM) branch alone, ResNet-50-vd, OS16, PP_Out 128.

    The paper's other De4(PPM) ablation is ``--set pp_out=1024``.
    """
    return create_dbmsnet("pspnet_r50vd_os16", dict(backbone="resnet50vd", branches=("ppm",)), kwargs)
