"""Inference-time fusion of DBMSNet's DDC blocks into the fused op.

:func:`fuse_model` (what ``DBMSNet.fuse()`` calls) folds every BatchNorm of each DDC block and swaps
the block for a :class:`FusedDDC`: the reduce conv and the pooling branch stay PyTorch convs (with
the BN folded into their bias), and DDC steps 2-4 (four dilated depthwise branches, the pooled
broadcast, channel shuffle and residual add) become one call of :func:`~edgeseg.ops.fused_ddc`.

A DDC block is recognised by the team contract of ``edgeseg.models.dbmsnet.DDCBlock``, not by its
class: a module with ``reduce`` (conv, BN), ``branches`` (four ``(conv, BN, ReLU)``: depthwise 3x3,
dilation d, padding d), ``pool`` ((1x1 conv, BN, ReLU) applied to the mean of the reduced map) and
``dilations``. Anything in that shape that is not foldable raises :class:`EdgesegError` naming the
module, never silently skips it.

Fusion is for inference only: BN statistics are frozen into the weights, so the model must be in
eval mode, and a fused block refuses to run in training mode (train the unfused model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from edgeseg.errors import EdgesegError
from edgeseg.ops.fused_ddc_op import fused_ddc

__all__ = ["FusedDDC", "fold_conv_bn", "bn_affine", "is_ddc_block", "fuse_model"]


def bn_affine(bn: nn.BatchNorm2d, name: str = "BatchNorm") -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = x * scale + shift``.

    Args:
        bn: the BatchNorm; it must track running statistics.
        name: module name for error messages.

    Returns:
        ``(scale, shift)``, each of shape (C,), detached float copies.
    """
    if not isinstance(bn, nn.BatchNorm2d):
        raise EdgesegError(f"{name}: expected BatchNorm2d, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise EdgesegError(f"{name}: BatchNorm without running statistics cannot be folded")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.float() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.float()
        shift = -bn.running_mean.float() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.float()
    return scale, shift


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str = "conv") -> nn.Conv2d:
    """A new ``Conv2d`` (with bias) equal to ``bn(conv(x))`` in eval mode.

    Args:
        conv: the convolution (any kernel, stride, dilation, groups; bias optional).
        bn: the BatchNorm that follows it.
        name: module name for error messages.

    Returns:
        The folded convolution, same dtype and device as ``conv``.
    """
    if not isinstance(conv, nn.Conv2d):
        raise EdgesegError(f"{name}: expected Conv2d, got {type(conv).__name__}")
    scale, shift = bn_affine(bn, name)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.float() * scale.view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias.float() * scale + shift
        assert fused.bias is not None  # made with bias=True above
        fused.bias.copy_(bias)
    return fused


def is_ddc_block(module: nn.Module) -> bool:
    """Whether ``module`` has the DDC block contract's structure (see the module docstring)."""
    branches = getattr(module, "branches", None)
    return (
        isinstance(getattr(module, "reduce", None), nn.Sequential)
        and isinstance(branches, nn.ModuleList)
        and len(branches) == 4
        and isinstance(getattr(module, "pool", None), nn.Sequential)
        and len(getattr(module, "dilations", ())) == 4
    )


def _unpack(seq: nn.Module, name: str, *, relu: bool) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    layers = list(seq.children())
    want = 3 if relu else 2
    if len(layers) != want or (relu and not isinstance(layers[2], nn.ReLU)):
        kind = "(Conv2d, BatchNorm2d, ReLU)" if relu else "(Conv2d, BatchNorm2d)"
        raise EdgesegError(f"{name}: expected {kind}, got {[type(m).__name__ for m in layers]}")
    conv, bn = layers[0], layers[1]
    if not isinstance(conv, nn.Conv2d):
        raise EdgesegError(f"{name}: expected a Conv2d first, got {type(conv).__name__}")
    if not isinstance(bn, nn.BatchNorm2d):
        raise EdgesegError(f"{name}: expected a BatchNorm2d second, got {type(bn).__name__}")
    return conv, bn


class FusedDDC(nn.Module):
    """A DDC block with BatchNorm folded and steps 2-4 computed by the fused op.

    ``forward(x)``: ``r = reduce(x)``; ``pooled = relu(pool(mean(r)))``;
    ``y = fused_ddc(r, weight, dilations, scale, shift, pooled, residual=x)``.

    Args:
        reduce: the reduce convolution with its BN folded in (bias).
        pool: the pooling branch's 1x1 convolution with its BN folded in (bias).
        weight: depthwise kernels of the four branches, (4, C, 3, 3).
        scale: folded BN scale of each branch, (4, C).
        shift: folded BN shift of each branch, (4, C).
        dilations: the four dilations.
    """

    weight: Tensor  # buffers, declared for the type checker (register_buffer sets them)
    scale: Tensor
    shift: Tensor

    def __init__(
        self,
        reduce: nn.Conv2d,
        pool: nn.Conv2d,
        weight: Tensor,
        scale: Tensor,
        shift: Tensor,
        dilations: Sequence[int],
    ) -> None:
        super().__init__()
        self.reduce = reduce
        self.pool = pool
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        self.dilations = tuple(int(d) for d in dilations)

    @classmethod
    def from_ddc(cls, block: nn.Module, name: str = "DDC block") -> FusedDDC:
        """Fold a DDC block (see the module docstring) into a :class:`FusedDDC`.

        Args:
            block: the unfused block, in eval mode.
            name: its qualified name, for error messages.

        Returns:
            The fused module, in eval mode.
        """
        if block.training:
            raise EdgesegError(f"{name}: folding BatchNorm needs eval mode: call model.eval() first")
        # The block is any module with the contract's attributes: nn.Module types them loosely.
        reduce_conv, reduce_bn = _unpack(cast(nn.Module, block.reduce), f"{name}.reduce", relu=False)
        pool_conv, pool_bn = _unpack(cast(nn.Module, block.pool), f"{name}.pool", relu=True)
        channels = reduce_conv.out_channels
        if (
            pool_conv.kernel_size != (1, 1)
            or pool_conv.in_channels != channels
            or pool_conv.out_channels != channels
        ):
            raise EdgesegError(f"{name}.pool: expected a 1x1 conv {channels}->{channels}")
        dilations = tuple(int(d) for d in cast("Sequence[int]", block.dilations))
        weights, scales, shifts = [], [], []
        for b, (branch, d) in enumerate(zip(cast(nn.ModuleList, block.branches), dilations, strict=True)):
            where = f"{name}.branches.{b}"
            conv, bn = _unpack(branch, where, relu=True)
            depthwise = conv.in_channels == conv.out_channels == conv.groups == channels
            if not depthwise or conv.kernel_size != (3, 3) or conv.stride != (1, 1):
                raise EdgesegError(f"{where}: expected a depthwise 3x3 stride-1 conv on {channels} channels")
            if conv.dilation != (d, d) or conv.padding != (d, d) or conv.padding_mode != "zeros":
                raise EdgesegError(
                    f"{where}: expected dilation = zero padding = {d}, got dilation {conv.dilation} "
                    f"padding {conv.padding} ({conv.padding_mode})"
                )
            scale, shift = bn_affine(bn, where)
            if conv.bias is not None:
                shift = shift + conv.bias.detach().float() * scale
            weights.append(conv.weight.detach().float().reshape(channels, 3, 3))
            scales.append(scale)
            shifts.append(shift)
        dtype = reduce_conv.weight.dtype
        fused = cls(
            fold_conv_bn(reduce_conv, reduce_bn, f"{name}.reduce"),
            fold_conv_bn(pool_conv, pool_bn, f"{name}.pool"),
            torch.stack(weights).to(dtype),
            torch.stack(scales).to(dtype),
            torch.stack(shifts).to(dtype),
            dilations,
        )
        return fused.eval()

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            raise EdgesegError("FusedDDC is inference-only (BatchNorm is folded); train the unfused model")
        r = self.reduce(x)
        pooled = torch.relu(self.pool(r.mean((2, 3), keepdim=True))).flatten(1)
        return fused_ddc(r, self.weight, self.dilations, self.scale, self.shift, pooled, x)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, dilations={self.dilations}"


def fuse_model(model: nn.Module) -> nn.Module:
    """Replace every DDC block of ``model`` by a :class:`FusedDDC`, in place.

    The fused model is for inference (and for ONNX export with the TensorRT plugin, see
    :mod:`edgeseg.ops.onnx_plugin`); its ``state_dict`` no longer matches the preset, so save and
    train the unfused model and fuse after loading.

    Args:
        model: a model in eval mode (``model.eval()``).

    Returns:
        ``model`` itself, or a :class:`FusedDDC` when ``model`` is itself a DDC block.

    Raises:
        EdgesegError: the model is in training mode, or a DDC block does not match the contract.
    """
    if model.training:
        raise EdgesegError("fuse() folds BatchNorm statistics and needs eval mode: call model.eval() first")
    if is_ddc_block(model):
        return FusedDDC.from_ddc(model)
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if is_ddc_block(child):
                qualified = f"{parent_name}.{child_name}" if parent_name else child_name
                setattr(parent, child_name, FusedDDC.from_ddc(child, qualified))
    return model
