"""PyTorch backend: the FP32 reference every deployed artifact is validated against."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta

__all__ = ["TorchRunner"]


class TorchRunner(BaseRunner):
    """Run an ``nn.Module`` in eval mode under ``torch.inference_mode()``.

    The runner speaks the same I/O contract as the exported ONNX graph: one float32 input
    ``(N, 3, H, W)`` (already normalised) and one float32 output, so it can stand in for any other
    backend. Inputs may be numpy arrays or torch tensors on any device; outputs are numpy on the CPU.

    Args:
        model: the network; its forward must return a logits tensor in eval mode.
        device: device to run on. Defaults to ``"cpu"``.
        dtype: compute dtype (the model and the input are cast to it; the output is returned as
            float32). Defaults to ``torch.float32``.
        channels_last: run in NHWC memory format (faster convolutions on recent GPUs).
            Defaults to False.
        input_name: name of the single input. Defaults to ``"images"``.
        output_name: name of the single output. Defaults to ``"logits"``.
        name: label for reports. Defaults to ``"torch:<ModelClass>"``.

    Note:
        Activation moves and casts ``model`` in place (as ``Module.to`` does) and sets eval mode.
    """

    backend = "torch"

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        input_name: str = "images",
        output_name: str = "logits",
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"torch:{type(model).__name__}")
        if not dtype.is_floating_point:
            raise EdgesegError(f"TorchRunner: dtype must be a floating-point dtype, got {dtype}")
        self.model = model
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last
        self.input_name = input_name
        self.output_name = output_name

    def activate_impl(self) -> None:
        self.model.to(device=self.device, dtype=self.dtype).eval()
        if self.channels_last:
            # Module.to's typed overloads omit memory_format; it applies to 4-D parameters only.
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        # Only the channel count is fixed by the network; batch and spatial size are free.
        return [TensorMeta(self.input_name, np.dtype(np.float32), ("N", 3, "H", "W"))]

    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        x = torch.as_tensor(feed[self.input_name])
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=memory_format)
        with torch.inference_mode():
            out = self.model(x)
        if not isinstance(out, torch.Tensor):
            raise EdgesegError(f"{self.name}: model returned {type(out).__name__} in eval mode, "
                               "expected a logits tensor")
        return {self.output_name: out.float().cpu().numpy()}
