"""Turning what users pass as frames into one uint8 NHWC torch tensor, with clear errors.

Accepted (see :func:`as_frame_batch`): a numpy array or CPU torch tensor of shape ``(H, W, 3)``
(one frame) or ``(N, H, W, 3)`` (a batch), dtype uint8; a list/tuple of such frames; any object
exposing ``__cuda_array_interface__`` (PyTorch CUDA tensors, CuPy arrays, pycuda ``GPUArray``),
which is viewed on the GPU through ``torch.as_tensor`` without a host copy.

Everything else is rejected here with an :class:`~edgeseg.errors.EdgesegError` that says what was
expected, so that no malformed array ever reaches a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edgeseg.errors import EdgesegError

__all__ = ["COLOR_ORDERS", "as_frame_batch", "is_device_array", "check_frame"]

COLOR_ORDERS = ("rgb", "bgr")

_EXPECTED = "an HxWx3 uint8 frame or an NxHxWx3 uint8 batch"


def is_device_array(obj: Any) -> bool:
    """True for GPU arrays (CUDA tensors, CuPy, pycuda) that expose ``__cuda_array_interface__``."""
    if isinstance(obj, torch.Tensor):
        return obj.device.type == "cuda"
    return hasattr(obj, "__cuda_array_interface__")


def check_frame(shape: Sequence[int], dtype: Any, *, batched: bool) -> None:
    """Raise :class:`EdgesegError` unless ``shape``/``dtype`` describe uint8 HWC frame(s).

    Args:
        shape: the array's shape.
        dtype: its dtype (numpy, torch or CuPy; compared by name).
        batched: whether a leading batch dimension is allowed.
    """
    shape = tuple(int(s) for s in shape)
    dtype_name = str(dtype).removeprefix("torch.")
    rank_ok = len(shape) == 3 or (batched and len(shape) == 4)
    if not rank_ok:
        hint = " (a grayscale image? stack it to 3 channels)" if len(shape) == 2 else ""
        raise EdgesegError(f"expected {_EXPECTED}, got an array of shape {shape}{hint}")
    if shape[-1] != 3:
        if shape[-1] == 4:
            hint = " (RGBA/BGRA? drop the alpha channel)"
        elif shape[-3] == 3:
            hint = " (channels-first? pass HxWx3, e.g. arr.transpose(1, 2, 0))"
        else:
            hint = ""
        raise EdgesegError(f"expected 3 colour channels last ({_EXPECTED}), got shape {shape}{hint}")
    if min(shape) == 0:
        raise EdgesegError(f"got an empty frame of shape {shape}")
    if dtype_name != "uint8":
        hint = (
            " (scale floats in 0..1 with (x * 255).round().astype(np.uint8))" if "float" in dtype_name else ""
        )
        raise EdgesegError(f"expected uint8 pixels 0..255 ({_EXPECTED}), got dtype {dtype_name}{hint}")


def _one_array(obj: Any, device: torch.device, batched: bool) -> torch.Tensor:
    if is_device_array(obj):
        if device.type != "cuda":
            raise EdgesegError(
                "got a GPU array (__cuda_array_interface__) but this Segmenter runs on the CPU; "
                "pass a host numpy array, or load the Segmenter with a CUDA backend"
            )
        shape, dtype = _shape_dtype(obj)
        check_frame(shape, dtype, batched=batched)
        # Zero-copy view of the caller's device memory (DLPack / CUDA array interface).
        return torch.as_tensor(obj, device=device)
    if isinstance(obj, torch.Tensor):
        check_frame(obj.shape, obj.dtype, batched=batched)
        return obj.to(device)
    if isinstance(obj, np.ndarray):
        check_frame(obj.shape, obj.dtype, batched=batched)
        # from_numpy shares memory; negative strides (e.g. a cv2 BGR->RGB [..., ::-1] view) are not
        # supported by torch, so only those pay for a copy.
        arr = obj if all(s >= 0 for s in obj.strides) else np.ascontiguousarray(obj)
        return torch.from_numpy(arr).to(device)
    raise EdgesegError(
        f"expected {_EXPECTED} (numpy array, torch tensor or CUDA array), got {type(obj).__name__}"
    )


def _shape_dtype(obj: Any) -> tuple[tuple[int, ...], Any]:
    if isinstance(obj, torch.Tensor):
        return tuple(obj.shape), obj.dtype
    iface = obj.__cuda_array_interface__
    return tuple(iface["shape"]), np.dtype(iface["typestr"])


def as_frame_batch(frames: Any, device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], bool]:
    """Validate frames and view them as uint8 ``(n, H, W, 3)`` tensors on ``device``.

    Args:
        frames: one frame, a batch array, or a list/tuple of frames (their sizes may differ).
        device: where preprocessing runs; GPU arrays are only accepted on a CUDA device.

    Returns:
        ``(groups, single)``: same-size groups of frames, each ``(n, H, W, 3)`` uint8, in input
        order; ``single`` is True when one unbatched frame was passed (results are unwrapped).

    Raises:
        EdgesegError: wrong rank, channel count, dtype, an empty list, or an unsupported type.
    """
    device = torch.device(device)
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise EdgesegError(f"got an empty list of frames; expected {_EXPECTED}")
        tensors = [_one_array(f, device, batched=False) for f in frames]
        groups: list[torch.Tensor] = []
        run: list[torch.Tensor] = []
        for t in tensors:  # consecutive frames of one size are batched together
            if run and t.shape != run[0].shape:
                groups.append(torch.stack(run))
                run = []
            run.append(t)
        groups.append(torch.stack(run))
        return groups, False
    t = _one_array(frames, device, batched=True)
    return ([t.unsqueeze(0)], True) if t.ndim == 3 else ([t], False)
