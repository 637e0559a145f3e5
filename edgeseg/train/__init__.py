"""Training: the loop, the poly schedule, the loss, checkpoints and DDP.

Typical use (what ``edgeseg train`` does)::

    from edgeseg.train import TrainConfig, fit
    result = fit(model, train_set, TrainConfig(iters=2000, batch_size=8, lr=0.02, out_dir="runs/x"),
                 card, val_set=val_set)

``runs/x/last.pt`` / ``best.pt`` are training checkpoints that :func:`edgeseg.checkpoint.load_model`
also reads; ``runs/x/log.jsonl`` is the JSON-lines log.
"""

from edgeseg.train.checkpoint import TRAIN_FORMAT, load_checkpoint, save_checkpoint
from edgeseg.train.config import TrainConfig
from edgeseg.train.evaluate import evaluate
from edgeseg.train.loop import TrainResult, fit
from edgeseg.train.loss import segmentation_loss
from edgeseg.train.schedule import PolyLR, poly_lr

__all__ = [
    "TrainConfig",
    "fit",
    "TrainResult",
    "evaluate",
    "segmentation_loss",
    "PolyLR",
    "poly_lr",
    "save_checkpoint",
    "load_checkpoint",
    "TRAIN_FORMAT",
]
