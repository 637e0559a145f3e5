"""The training loss of the segmentation zoo (per the models contract).

``loss = CE(outputs["out"]) + sum_k aux_weights[k] * CE(outputs[k])``, pixel-wise cross-entropy
averaged over non-ignored pixels, ignore index 255.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["segmentation_loss"]


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    # float32: under autocast the logits may be bf16/fp16, whose log-softmax loses precision.
    summed = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    # Mean over labelled pixels; a crop that is entirely void gives 0 instead of 0/0 = NaN, which
    # would otherwise poison every weight through the backward pass.
    return summed / (target != ignore_index).sum().clamp(min=1)


def segmentation_loss(
    outputs: torch.Tensor | Mapping[str, torch.Tensor],
    target: torch.Tensor,
    aux_weights: Mapping[str, float] | None = None,
    ignore_index: int = 255,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the main logits plus weighted auxiliary terms.

    Args:
        outputs: train-mode model output, a dict with key ``"out"`` and auxiliary logits, all
            (N, K, H, W) at the target's resolution; a bare Tensor counts as ``{"out": tensor}``.
        target: (N, H, W) int64 class ids, ``ignore_index`` where unlabelled.
        aux_weights: weight of each auxiliary key; keys absent from ``outputs`` are an error, keys
            of ``outputs`` absent here (other than ``"out"``) do not contribute. Defaults to none.
        ignore_index: label excluded from the loss. Defaults to 255.

    Returns:
        ``(total, parts)``: the scalar loss to back-propagate and the unweighted value of each
        term as floats (``"out"`` and every weighted auxiliary key), for logging.
    """
    if isinstance(outputs, torch.Tensor):
        outputs = {"out": outputs}
    if "out" not in outputs:
        raise KeyError(f"model outputs have no 'out' key (got {sorted(outputs)})")
    main = _cross_entropy(outputs["out"], target, ignore_index)
    total = main
    parts = {"out": main.detach()}
    for key, weight in (aux_weights or {}).items():
        if key not in outputs:
            raise KeyError(f"aux_weights names {key!r} but the model outputs only {sorted(outputs)}")
        term = _cross_entropy(outputs[key], target, ignore_index)
        total = total + weight * term
        parts[key] = term.detach()
    return total, {k: float(v) for k, v in parts.items()}
