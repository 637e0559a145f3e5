"""The typed training configuration.

One dataclass holds every knob of a run. It is stored inside each training checkpoint (as a plain
dict, so ``torch.load(..., weights_only=True)`` reads it) and checked on ``--resume``, so a resumed
run cannot silently continue with a different schedule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["TrainConfig", "AMP_MODES", "SCHEDULE_FIELDS"]

#: ``auto`` = bf16 on CUDA GPUs that support it, else fp16 on CUDA, off on the CPU.
AMP_MODES = ("auto", "off", "bf16", "fp16")

#: Fields that define the optimisation trajectory; a resumed run must keep them unchanged.
SCHEDULE_FIELDS = ("iters", "batch_size", "lr", "momentum", "weight_decay", "poly_power", "seed")


@dataclass
class TrainConfig:
    """Everything that controls one training run.

    Defaults follow the DBMSNet recipe (SGD, momentum 0.9, weight decay 4e-5, poly LR with power
    0.9 decayed to 0 at the last iteration).

    Args:
        iters: total number of optimizer steps (the poly schedule's ``max_iter``).
        batch_size: *global* batch size; under DDP each of K processes loads ``batch_size / K``
            samples per step, so the schedule does not depend on the number of processes.
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay applied to every parameter.
        poly_power: exponent of the poly schedule ``lr = base * (1 - iter / iters) ** power``.
        ignore_index: label value excluded from the loss and the metrics.
        eval_every: evaluate on the validation set every this many iterations (and always after
            the last one); ``0`` evaluates only at the end.
        checkpoint_every: write ``last.pt`` every this many iterations (and after the last one).
        log_every: write a JSON-lines record every this many iterations.
        val_batch_size: batch size of the evaluation loader (validation images must share a size
            to be batched; eval transforms resize them to one).
        num_workers: DataLoader worker processes per training process.
        amp: mixed precision mode, one of ``auto``, ``off``, ``bf16``, ``fp16``. Mixed precision
            only exists on CUDA; asking for ``bf16``/``fp16`` on the CPU is an error.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        seed: seeds Python, NumPy, torch and the data order.
        deterministic: use only deterministic kernels (``torch.use_deterministic_algorithms``),
            needed for bit-exact resume; slower on GPUs.
        sync_bn: convert BatchNorm layers to SyncBatchNorm under DDP (CUDA only).
        out_dir: run folder for ``last.pt``, ``best.pt`` and ``log.jsonl``.
    """

    iters: int = 1000
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 4e-5
    poly_power: float = 0.9
    ignore_index: int = 255
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    val_batch_size: int = 4
    num_workers: int = 2
    amp: str = "auto"
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    out_dir: str = "runs/train"

    def __post_init__(self) -> None:
        positive = ("iters", "batch_size", "checkpoint_every", "log_every", "val_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise EdgesegError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "num_workers"):
            if getattr(self, name) < 0:
                raise EdgesegError(f"train config: {name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise EdgesegError(f"train config: lr must be > 0, got {self.lr}")
        if self.amp not in AMP_MODES:
            raise EdgesegError(f"train config: amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise EdgesegError(f"train config: device must be auto, cpu or cuda, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed dict (stored in checkpoints and ``log.jsonl``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise EdgesegError(f"train config has unknown fields {unknown}")
        return cls(**d)
