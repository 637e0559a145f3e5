"""Python face of ``torch.ops.edgeseg.fused_ddc``: loading, fake implementation, typed wrapper.

The op itself (schema, CPU and CUDA kernels) is compiled into ``edgeseg._C`` from ``cpp_ext/``.
Importing this module loads that library, which registers the op, and then registers the op's
fake implementation (output shape and dtype only) so ``torch.compile`` and ``torch.export`` can
trace through it, and an autograd formula that refuses backward: the op is inference-only.

When the library was not built (``EDGESEG_BUILD_EXT=0``, no compiler at install time) or has no
kernel for a tensor's device, :func:`fused_ddc` runs :func:`~edgeseg.ops.reference.fused_ddc_reference`
instead and warns once, so a model that was fused still runs, only slower.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from edgeseg.ops.reference import NUM_BRANCHES, fused_ddc_reference

__all__ = ["fused_ddc", "extension_available", "has_kernel", "extension_error"]

_OP_NAME = "edgeseg::fused_ddc"


def _load_extension() -> str | None:
    """Import ``edgeseg._C``; returns None on success, else why it could not be loaded."""
    try:
        importlib.import_module("edgeseg._C")
    except ImportError as e:
        return str(e)
    return None


def _kernel_devices() -> frozenset[str]:
    if _LOAD_ERROR is not None:
        return frozenset()
    # No public API says "this op has a kernel for that dispatch key"; torch.library's own tooling
    # uses this one. Asked once at import: the registrations happen when edgeseg._C loads.
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return frozenset(dev for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")) if has(_OP_NAME, key))


_LOAD_ERROR = _load_extension()
_KERNEL_DEVICES = _kernel_devices()
_warned: set[str] = set()

if _LOAD_ERROR is None:

    @torch.library.register_fake(_OP_NAME)
    def _fused_ddc_fake(
        x: Tensor,
        weight: Tensor,
        dilations: Sequence[int],
        scale: Tensor,
        shift: Tensor,
        pooled: Tensor,
        residual: Tensor | None,
    ) -> Tensor:
        torch._check(x.dim() == 4, lambda: f"fused_ddc: x must be (N, C, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        torch._check(tuple(weight.shape) == (4, c, 3, 3), lambda: "fused_ddc: weight must be (4, C, 3, 3)")
        torch._check(len(dilations) == 4, lambda: "fused_ddc: expected 4 dilations")
        return x.new_empty((n, NUM_BRANCHES * c, h, w))

    def _no_backward(ctx: object, grad: Tensor) -> None:
        # Without an autograd kernel PyTorch would only warn and return wrong (absent) gradients.
        raise RuntimeError(
            "edgeseg::fused_ddc is inference-only and has no backward; train the unfused model "
            "(DDCBlock) and fuse after training"
        )

    torch.library.register_autograd(_OP_NAME, _no_backward)


def extension_available() -> bool:
    """Whether the compiled op (``edgeseg._C``) is loaded."""
    return _LOAD_ERROR is None


def extension_error() -> str | None:
    """Why ``edgeseg._C`` could not be imported, or None when it is loaded."""
    return _LOAD_ERROR


def has_kernel(device: torch.device | str) -> bool:
    """Whether the compiled op has a kernel for ``device``'s type (``cpu`` always, ``cuda`` if built).

    Args:
        device: a torch device or its string form.
    """
    return torch.device(device).type in _KERNEL_DEVICES


def _warn_fallback_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f"edgeseg fused_ddc: {reason}; running the (slower) PyTorch reference instead",
            RuntimeWarning,
            stacklevel=3,
        )


def fused_ddc(
    x: Tensor,
    weight: Tensor,
    dilations: Sequence[int],
    scale: Tensor,
    shift: Tensor,
    pooled: Tensor,
    residual: Tensor | None = None,
) -> Tensor:
    """DDC steps 2-4 in one kernel: four dilated depthwise convs + folded BN + ReLU, pooled branch,
    channel shuffle (5 groups) and residual add, written once in shuffled channel order.

    Output channel ``c * 5 + b`` holds branch ``b``'s channel ``c`` (branch 4 is ``pooled``).
    FP32 on CPU; FP32 and FP16 on CUDA (all tensors share x's dtype and device).

    Args:
        x: the DDC's reduced map, (N, C, H, W).
        weight: the four depthwise 3x3 kernels, (4, C, 3, 3).
        dilations: four ints; padding equals dilation.
        scale: BN scale of each conv branch, (4, C).
        shift: BN shift of each conv branch, (4, C).
        pooled: the pooling branch's activated vector, (N, C).
        residual: (N, 5C, H, W) added to the result, or None.

    Returns:
        y, (N, 5C, H, W).
    """
    dilations = [int(d) for d in dilations]
    if _LOAD_ERROR is not None:
        _warn_fallback_once(f"the compiled extension edgeseg._C is not available ({_LOAD_ERROR})")
    elif x.device.type not in _KERNEL_DEVICES:
        _warn_fallback_once(f"edgeseg._C was built without a {x.device.type} kernel")
    else:
        return torch.ops.edgeseg.fused_ddc.default(x, weight, dilations, scale, shift, pooled, residual)
    return fused_ddc_reference(x, weight, dilations, scale, shift, pooled, residual)
