"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A training checkpoint is a superset of the deployable bundle of :mod:`edgeseg.checkpoint`: it has
the same ``"card"`` and ``"state_dict"`` keys, so :func:`edgeseg.checkpoint.load_model` reads
``last.pt`` / ``best.pt`` directly. Every value is a tensor or a plain Python type, so it loads with
``torch.load(..., weights_only=True)``; files are written through
:func:`edgeseg._io.save_torch` (atomic), so an interrupted save never leaves a truncated checkpoint.

Layout (``format = "edgeseg.train/1"``)::

    card        ModelCard as dict           state_dict  model weights (unwrapped from DDP)
    optimizer   optimizer.state_dict()      scheduler   scheduler.state_dict()
    scaler      GradScaler state (or {})    iteration   optimizer steps taken
    rng         one get_rng_state() per rank (python, numpy, torch, cuda)
    sampler     {"epoch", "start", "seed", "num_replicas"}: where the data order resumes
    config      TrainConfig as dict         best        {"miou", "iteration"}
    metrics     last evaluation's metrics (percent), {} if none yet
    loss        total loss of the last step     train_time_s  training seconds so far
    batch_norm  {"sync", "world_size", "has_batchnorm", "stats_batch"}: how BatchNorm saw the batch
                (absent in checkpoints written before it was recorded)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeseg._io import save_torch
from edgeseg.checkpoint import read_checkpoint
from edgeseg.errors import EdgesegError

__all__ = ["TRAIN_FORMAT", "save_checkpoint", "load_checkpoint"]

TRAIN_FORMAT = "edgeseg.train/1"

_REQUIRED = ("card", "state_dict", "optimizer", "scheduler", "iteration", "rng", "sampler", "config")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write a training checkpoint atomically.

    Args:
        path: destination (``last.pt`` / ``best.pt``).
        state: the keys listed in the module docstring; ``format`` is added here.

    Raises:
        ValueError: a required key is missing (a bug in the caller, not user input).
    """
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"training checkpoint is missing {missing}")
    save_torch(path, {"format": TRAIN_FORMAT, **state})


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True`` onto the CPU.

    Raises:
        EdgesegError: the file is missing, unreadable, or not a training checkpoint (for example a
            deployable bundle, which has no optimizer state to resume from).
    """
    p = Path(path)
    obj = read_checkpoint(p, "training checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != TRAIN_FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise EdgesegError(f"{p}: not an edgeseg training checkpoint (format {found!r}, "
                           f"expected {TRAIN_FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise EdgesegError(f"{p}: training checkpoint lacks {missing}")
    return obj
