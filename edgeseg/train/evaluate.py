"""Evaluation of a PyTorch segmentation model over a dataset (mIoU, PA, ...)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from edgeseg.metrics import ConfusionMatrix, SegMetrics

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int, *,
             device: torch.device | str = "cpu", ignore_index: int = 255,
             amp_dtype: torch.dtype | None = None) -> SegMetrics:
    """Accumulate one confusion matrix of argmax predictions over ``batches``.

    The model is put in eval mode (its forward then returns logits at input resolution) and left
    there; the training loop switches it back. Inside a process group every rank passes its own
    shard of the validation set and the confusion matrices are summed, so all ranks return the
    metrics of the whole set.

    Args:
        model: eval-mode forward returns (N, K, H, W) logits.
        batches: ``(images, masks)`` pairs, e.g. a DataLoader over the validation set.
        num_classes: K.
        device: where the model runs. Defaults to the CPU.
        ignore_index: label value excluded from the metrics. Defaults to 255.
        amp_dtype: autocast dtype on CUDA (``None`` = full precision).

    Returns:
        The metrics (percentages) of everything seen by all ranks.
    """
    device = torch.device(device)
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for images, masks in batches:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images.to(device))
        cm.update(logits.argmax(1), masks)
    if dist.is_available() and dist.is_initialized():
        # NCCL reduces only device tensors; gloo only host ones.
        mat = cm.mat.to(device)
        dist.all_reduce(mat)
        cm.mat = mat.cpu()
    return cm.compute()
