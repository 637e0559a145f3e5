"""The "poly" learning-rate schedule, stepped once per iteration.

``lr(t) = base_lr * (1 - t / max_iter) ** power``, reaching exactly 0 at ``t = max_iter``
(DeepLab / PSPNet / DBMSNet recipe). torch's own ``PolynomialLR`` updates the rate multiplicatively
step after step, which accumulates rounding error; this scheduler always uses the closed form, so
``lr`` after a resume is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["PolyLR", "poly_lr"]


def poly_lr(base_lr: float, iteration: int, max_iter: int, power: float = 0.9) -> float:
    """Learning rate of the poly schedule at ``iteration`` (clamped to 0 past ``max_iter``).

    Args:
        base_lr: rate at iteration 0.
        iteration: number of optimizer steps already taken.
        max_iter: iteration at which the rate reaches 0.
        power: decay exponent. Defaults to 0.9.
    """
    return base_lr * max(0.0, 1.0 - iteration / max_iter) ** power


class PolyLR(LRScheduler):
    """Poly decay of every parameter group's rate; call :meth:`step` after each optimizer step.

    Args:
        optimizer: the optimizer whose groups' ``initial_lr`` is the base rate.
        max_iter: total number of iterations.
        power: decay exponent. Defaults to 0.9.
        last_epoch: index of the last step taken (``-1`` for a new run), as in torch schedulers.
    """

    def __init__(self, optimizer: Optimizer, max_iter: int, power: float = 0.9, last_epoch: int = -1) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.max_iter = max_iter
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        # ``last_epoch`` counts scheduler steps, i.e. iterations here.
        return [poly_lr(float(base), self.last_epoch, self.max_iter, self.power) for base in self.base_lrs]
