"""The training loop: :func:`fit`.

One function owns the whole run — optimizer, poly schedule, mixed precision, DDP, periodic
evaluation, checkpoints, progress and log — so that the order of those steps is written in one
place. Its inputs are an already-built model and datasets, which keeps it usable from the CLI, from
tests with a tiny model, and from users' own scripts.

Resume is exact (bit-identical weights to an uninterrupted run) in deterministic mode: the data
order is a function of ``(seed, epoch)`` (:class:`ResumableSampler`), the learning rate is a closed
form of the iteration, and the RNG states of every rank are stored. Augmentation is exact too when
the dataset seeds it per sample (edgeseg datasets built with ``seed=``, whose ``set_epoch`` this loop
calls) or when it draws from the global RNG with ``num_workers=0``; augmentation drawn from the
global RNG inside worker processes restarts from a new seed after a resume.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.train.checkpoint import load_checkpoint, save_checkpoint
from edgeseg.train.config import SCHEDULE_FIELDS, TrainConfig
from edgeseg.train.distributed import DistInfo, barrier, dist_info, gather_objects
from edgeseg.train.evaluate import evaluate
from edgeseg.train.loader import checked, make_loader
from edgeseg.train.loss import segmentation_loss
from edgeseg.train.monitor import TrainMonitor
from edgeseg.train.rng import get_rng_state, seed_everything, set_deterministic, set_rng_state
from edgeseg.train.sampler import ResumableSampler
from edgeseg.train.schedule import PolyLR

__all__ = [
    "fit", "TrainResult", "check_run_dir", "resolve_device", "resolve_amp", "RUN_FILES", "SYNC_BN_DEVICES",
]

#: What a run folder holds once a run wrote into it (``model.pt`` and ``summary.json`` come from the
#: CLI); a new run refuses a folder holding any of them unless told to resume or overwrite.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "summary.json", "model.pt")

#: Device types torch's SyncBatchNorm runs on (its forward refuses others, the CPU included).
SYNC_BN_DEVICES = ("cuda", "xpu", "hpu")


@dataclass
class TrainResult:
    """Outcome of :func:`fit` (identical on every rank).

    Args:
        iterations: optimizer steps taken in total (including those before a resume).
        loss: total loss of the last step.
        metrics: the last evaluation's metrics (``SegMetrics.to_dict``), empty without a val set.
        best_miou: best validation mIoU seen (NaN without a val set).
        best_iteration: iteration of ``best_miou``.
        wall_time_s: seconds spent in this call.
        cpu_time_s: CPU seconds of this process in this call (excludes DataLoader workers).
        train_time_s: seconds of training summed over the run and every resumed part.
        out_dir: the run folder.
    """

    iterations: int
    loss: float
    metrics: dict[str, Any] = field(default_factory=dict)
    best_miou: float = math.nan
    best_iteration: int = 0
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    train_time_s: float = 0.0
    out_dir: Path = Path(".")

    @property
    def last_checkpoint(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.out_dir / "best.pt"
        return path if path.is_file() else None


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` → CUDA when available; under DDP each process takes GPU ``local_rank``."""
    info = info or dist_info()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EdgesegError("device 'cuda' requested but torch sees no CUDA GPU (use --device cpu)")
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``mode`` on ``device``; ``None`` means full precision.

    Raises:
        EdgesegError: ``bf16``/``fp16`` asked for on a non-CUDA device (autocast on the CPU only
            slows training down and is not what the user meant).
    """
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise EdgesegError(f"--amp {mode} needs a CUDA device; training here runs on {device} "
                           "(use --amp off)")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    changed = {k: (saved.get(k), getattr(config, k)) for k in SCHEDULE_FIELDS
               if saved.get(k) != getattr(config, k)}
    if changed:
        what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise EdgesegError(f"{path}: cannot resume with a different schedule ({what}); "
                           "use the original values or start a new --out")


class _Optimization:
    """Model, optimizer, schedule and loss scaler: one training step and their saved state."""

    def __init__(self, model: nn.Module, config: TrainConfig, amp_dtype: torch.dtype | None,
                 device: torch.device) -> None:
        self.model, self.config, self.amp_dtype, self.device = model, config, amp_dtype, device
        self.aux_weights: dict[str, float] = dict(getattr(model, "aux_weights", {}) or {})
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        self.scheduler = PolyLR(self.optimizer, config.iters, config.poly_power)
        # Loss scaling is only needed for fp16, whose narrow exponent underflows small gradients.
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, net: nn.Module, images: torch.Tensor,
             masks: torch.Tensor) -> tuple[float, dict[str, float]]:
        """One optimizer step of ``net`` (the model or its DDP wrapper); returns the loss terms."""
        net.train()
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        with _autocast(self.device, self.amp_dtype):
            outputs = net(images)
        loss, parts = segmentation_loss(outputs, masks, self.aux_weights, self.config.ignore_index)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), parts

    def state(self) -> dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load(self, ckpt: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise EdgesegError(f"{path}: weights do not fit this model: {str(e).splitlines()[0]}") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])


def check_run_dir(out_dir: str | os.PathLike[str], *, resume: bool, overwrite: bool) -> list[str]:
    """Refuse to start a new run over an earlier one in ``out_dir`` unless ``overwrite``.

    Returns:
        The earlier run's files (:data:`RUN_FILES`) present in ``out_dir``.

    Raises:
        EdgesegError: both ``resume`` and ``overwrite``, or an earlier run and neither.
    """
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise EdgesegError("--resume continues the run in the output folder, --overwrite replaces it: "
                           "give one of them")
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not (resume or overwrite):
        raise EdgesegError(f"{out_dir} already holds a training run ({', '.join(existing)}); pass --resume "
                           "to continue it, --overwrite to replace it, or another --out")
    return existing


def _prepare_run_dir(out_dir: Path, *, resume: bool, overwrite: bool, info: DistInfo) -> None:
    existing = check_run_dir(out_dir, resume=resume, overwrite=overwrite)
    if overwrite and existing:
        if info.is_main:
            for name in existing:
                (out_dir / name).unlink()
        barrier()


def _batch_norm_record(model: nn.Module, config: TrainConfig, info: DistInfo, device: torch.device,
                       local_batch: int) -> dict[str, Any]:
    """How BatchNorm layers see the batch in this run, for the checkpoint and the log.

    Under DDP without SyncBatchNorm each process normalises with the statistics of its own share of
    the batch (``stats_batch`` samples), so the weights and running statistics differ from a
    single-process run with the same global batch. SyncBatchNorm, the exact alternative, exists only
    for :data:`SYNC_BN_DEVICES`; on the CPU (gloo) it is refused.
    """
    sync = config.sync_bn and info.distributed
    if sync and device.type not in SYNC_BN_DEVICES:
        raise EdgesegError(f"--sync-bn: torch's SyncBatchNorm does not run on {device.type} (only on "
                           f"{', '.join(SYNC_BN_DEVICES)}); drop --sync-bn to train with per-process "
                           "BatchNorm statistics")
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return {"sync": sync, "world_size": info.world_size, "has_batchnorm": has_bn,
            "stats_batch": config.batch_size if sync or not info.distributed else local_batch}


def fit(model: nn.Module, train_set: Dataset, config: TrainConfig, card: ModelCard, *,
        val_set: Dataset | None = None, resume: bool = False, overwrite: bool = False,
        console: Console | None = None, show_progress: bool = True) -> TrainResult:
    """Train ``model`` on ``train_set`` following ``config``; checkpoints go to ``config.out_dir``.

    Runs as one process of a DDP job when a ``torch.distributed`` process group is initialised
    (see :func:`edgeseg.train.distributed.init_from_env`): gradients are averaged across
    processes, each process reads its share of every global batch, and only rank 0 logs and
    writes files. A KeyboardInterrupt stops the run without writing anything: saving then could
    capture weights half-way through an optimizer step, so ``--resume`` continues from the last
    periodic checkpoint instead.

    BatchNorm under DDP: each process normalises with its own share of the batch unless
    ``config.sync_bn`` (SyncBatchNorm, CUDA only), so a CPU (gloo) DDP run does not reproduce
    single-process training of a model with BatchNorm. Every checkpoint records the choice under
    ``"batch_norm"`` (``sync``, ``world_size``, ``stats_batch``: samples per statistic).

    Args:
        model: a zoo model (train-mode forward returns ``{"out": ..., aux...}``, attribute
            ``aux_weights``) or any module returning logits; moved to the training device.
        train_set: yields ``(image (3,H,W) float, mask (H,W) int64)`` of one size (crops).
        config: the run's settings.
        card: model card stored in every checkpoint, so ``load_model`` reads ``last.pt``.
        val_set: evaluated every ``config.eval_every`` iterations and at the end; drives
            ``best.pt``. Defaults to no evaluation.
        resume: continue from ``<out_dir>/last.pt`` (same schedule required).
        overwrite: delete an earlier run's files (:data:`RUN_FILES`) from ``out_dir`` first; without
            it (or ``resume``) a folder holding any of them is refused.
        console: where the progress bar is drawn. Defaults to stderr.
        show_progress: draw the progress bar. Defaults to True.

    Returns:
        The run's final state.

    Raises:
        EdgesegError: bad settings for this machine, an earlier run in ``out_dir``, a dataset
            smaller than one batch, an unreadable sample, a checkpoint that does not fit, or a loss
            that became NaN/inf.
    """
    info = dist_info()
    device = resolve_device(config.device, info)
    amp_dtype = resolve_amp(config.amp, device)
    if config.deterministic:
        set_deterministic(True)
    if config.batch_size % info.world_size:
        raise EdgesegError(f"batch size {config.batch_size} does not divide between "
                           f"{info.world_size} processes")
    local_batch = config.batch_size // info.world_size
    out_dir = Path(config.out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    _prepare_run_dir(out_dir, resume=resume, overwrite=overwrite, info=info)

    batch_norm = _batch_norm_record(model, config, info, device, local_batch)
    if batch_norm["sync"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif info.is_main and show_progress and info.distributed and batch_norm["has_batchnorm"]:
        (console or Console(stderr=True)).print(
            f"note: BatchNorm statistics come from each process's {local_batch} samples, not from the "
            f"global batch of {config.batch_size} (--sync-bn synchronises them, on CUDA only)")
    model.to(device)
    opt = _Optimization(model, config, amp_dtype, device)

    sampler = ResumableSampler(train_set, num_replicas=info.world_size, rank=info.rank,  # type: ignore[arg-type]
                               seed=config.seed)
    per_epoch = sampler.num_samples // local_batch
    if per_epoch < 1:
        raise EdgesegError(f"training set has {len(train_set)} samples, fewer than one batch of "  # type: ignore[arg-type]
                           f"{config.batch_size}; lower --batch-size")

    start, loss, best_miou, best_iter, metrics, time_before = 0, math.nan, -math.inf, 0, {}, 0.0
    if resume:
        ckpt = load_checkpoint(last_path)
        _check_resumable(ckpt["config"], config, last_path)
        opt.load(ckpt, last_path)
        start = int(ckpt["iteration"])
        best_miou, best_iter = ckpt["best"]["miou"], ckpt["best"]["iteration"]
        metrics, loss = ckpt.get("metrics", {}), float(ckpt.get("loss", math.nan))
        time_before = float(ckpt.get("train_time_s", 0.0))
        if len(ckpt["rng"]) == info.world_size:
            set_rng_state(ckpt["rng"][info.rank])
        else:  # another world size: the run continues, but cannot be bit-exact.
            seed_everything(config.seed + info.rank + start)
    else:
        # Each rank draws its own augmentation stream; the initial weights are rank 0's (DDP
        # broadcasts them when it wraps the model).
        seed_everything(config.seed + info.rank)

    net: nn.Module = model
    if info.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # Workers are not persistent: each epoch's workers must see the dataset's new set_epoch().
    loader = make_loader(train_set, batch_size=local_batch, sampler=sampler, num_workers=config.num_workers,
                         pin_memory=device.type == "cuda", drop_last=True,
                         generator=torch.Generator().manual_seed(config.seed + 1000 * info.rank + start))
    val_loader = None
    if val_set is not None:
        shard = list(range(info.rank, len(val_set), info.world_size))  # type: ignore[arg-type]
        val_loader = make_loader(val_set, batch_size=config.val_batch_size, sampler=shard,
                                 num_workers=min(config.num_workers, 2))
    class_names = card.class_names if len(card.class_names) == card.num_classes else None

    def checkpoint_state(iteration: int, elapsed: float) -> dict[str, Any]:
        # Collective: every rank contributes its RNG state, so all ranks must call this.
        return {"card": card.to_dict(), **opt.state(), "iteration": iteration,
                "rng": gather_objects(get_rng_state()),
                "sampler": {"epoch": iteration // per_epoch, "start": (iteration % per_epoch) * local_batch,
                            "seed": config.seed, "num_replicas": info.world_size},
                "config": config.to_dict(), "best": {"miou": best_miou, "iteration": best_iter},
                "metrics": metrics, "loss": loss, "train_time_s": time_before + elapsed,
                "batch_norm": batch_norm}

    monitor = TrainMonitor(config.iters, start=start, log_path=out_dir / "log.jsonl",
                           log_every=config.log_every, console=console, show_progress=show_progress,
                           enabled=info.is_main)
    iteration = start
    with monitor:
        monitor.record("resume" if resume else "start", iter=start, world_size=info.world_size,
                       device=str(device), amp=str(amp_dtype), config=config.to_dict(), batch_norm=batch_norm)
        epoch, offset = divmod(start, per_epoch)
        while iteration < config.iters:
            sampler.set_epoch(epoch)
            sampler.set_start(offset * local_batch)
            if hasattr(train_set, "set_epoch"):  # edgeseg datasets seed augmentation per (epoch, index)
                train_set.set_epoch(epoch)
            for images, masks in checked(loader):
                lr = opt.lr
                loss, parts = opt.step(net, images, masks)
                iteration += 1
                if not math.isfinite(loss):
                    raise EdgesegError(f"loss became {loss} at iteration {iteration} (lr {lr:.3g}); "
                                       "lower --lr or check the labels")
                monitor.step(iteration, loss, parts, lr)

                final = iteration == config.iters
                state = None
                due = final or (config.eval_every > 0 and iteration % config.eval_every == 0)
                if val_loader is not None and due:
                    seg = evaluate(model, checked(val_loader), card.num_classes, device=device,
                                   ignore_index=config.ignore_index, amp_dtype=amp_dtype)
                    metrics = seg.to_dict(class_names)
                    monitor.evaluation(iteration, metrics)
                    if seg.miou > best_miou:
                        best_miou, best_iter = seg.miou, iteration
                        state = checkpoint_state(iteration, monitor.elapsed)
                        if info.is_main:
                            save_checkpoint(best_path, state)
                if final or iteration % config.checkpoint_every == 0:
                    state = state or checkpoint_state(iteration, monitor.elapsed)
                    if info.is_main:
                        save_checkpoint(last_path, state)
                    barrier()
                if final:
                    break
            epoch, offset = epoch + 1, 0
        monitor.record("end", iter=iteration, loss=loss, best_miou=best_miou, best_iter=best_iter,
                       wall_time_s=round(monitor.elapsed, 3))
    return TrainResult(iterations=iteration, loss=loss, metrics=metrics,
                       best_miou=best_miou if best_miou > -math.inf else math.nan, best_iteration=best_iter,
                       wall_time_s=monitor.elapsed, cpu_time_s=monitor.cpu_time,
                       train_time_s=time_before + monitor.elapsed,
                       out_dir=out_dir)
