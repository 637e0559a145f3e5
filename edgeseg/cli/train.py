"""`edgeseg train`: train a zoo model on a dataset and write a deployable bundle.

Composes the stages: dataset (:func:`edgeseg.data.load_dataset`) → model
(:func:`edgeseg.models.build_model`) → :func:`edgeseg.train.fit` → bundle
(:func:`edgeseg.checkpoint.save_model`). Launched by ``torchrun`` (``WORLD_SIZE`` set) it runs as
one process of a DistributedDataParallel job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console, interrupted, parse_hw, parse_sets
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.checkpoint import ModelCard
    from edgeseg.train import TrainConfig, TrainResult

__all__ = ["register"]

_HELP = """Train a segmentation model: checkpoints, a JSON-lines log, a deployable bundle.

\b
Examples:
  # the shipped demo model: see scripts/train_demo.sh
  edgeseg train -m dbmsnet_r18_os16 --set width=0.5 --data synthetic
  # Cityscapes, paper recipe, 4 GPUs (global batch 8 = 2 per GPU)
  torchrun --nproc-per-node=4 -m edgeseg.cli train \\
      -m dbmsnet_r50vd_os16 --data cityscapes:/data/cityscapes \\
      --crop 512x1024 --batch-size 8 --iters 40000
  # continue an interrupted run exactly where runs/demo/last.pt stopped
  edgeseg train ... --out runs/demo --resume
  # an --out folder holding a run is refused unless --resume or --overwrite

\b
Run folder (--out):
  last.pt       training checkpoint, every --checkpoint-every iterations
  best.pt       checkpoint with the best validation mIoU
  log.jsonl     one JSON record per line (start, train, eval, end)
  summary.json  final metrics and times; model.pt is the bundle
last.pt and best.pt are model bundles too (edgeseg.checkpoint.load_model).

\b
Schedule: SGD (momentum 0.9, weight decay 4e-5), poly learning rate
lr = LR * (1 - iter / ITERS) ** 0.9, reaching 0 at the last iteration.

\b
BatchNorm under DDP: each process normalises with its own share of the
batch, so a multi-process run differs from a single-process one with the
same global batch. --sync-bn (SyncBatchNorm) computes the statistics over the
global batch instead, on CUDA only; on the CPU (gloo) it is refused.
Checkpoints record the choice (batch_norm).

\b
Ctrl-C or SIGTERM stops the run without saving (a save could catch an
optimizer step half-done): last.pt keeps the last periodic checkpoint,
and the last line says how to resume.
"""


def _train_transform(crop: tuple[int, int], aug: dict[str, Any]) -> Any:
    from edgeseg.data import TrainTransform

    try:
        return TrainTransform(crop, **aug)
    except TypeError as e:
        raise EdgesegError(f"--aug: {e} (valid keys: scales, max_rotation, hflip_p, vflip_p, "
                           "brightness, contrast, saturation)") from None
    except ValueError as e:
        raise EdgesegError(f"--aug: {e}") from None


def _datasets(data: str, val_data: str | None, crop: tuple[int, int] | None, aug: dict[str, Any],
              eval_size: tuple[int, int] | None, data_opts: dict[str, Any], val_opts: dict[str, Any],
              seed: int) -> tuple[Any, Any, str | None]:
    """Open the training set (with its augmentation) and the validation set (``None`` if disabled)."""
    from edgeseg.data import EvalTransform, SyntheticShapes, load_dataset, parse_spec

    kind, root, split = parse_spec(data)
    # Per-sample augmentation seeds make the augmentation independent of worker count and resume.
    train_set = load_dataset(kind, root, split or "train", seed=seed, **data_opts)
    if crop is None:
        crop = train_set.size if isinstance(train_set, SyntheticShapes) else (512, 512)
    train_set.transform = _train_transform(crop, aug)
    if val_data is None:
        if kind == "folder":
            return train_set, None, None  # a plain folder has no val split to guess
        val_data = f"{kind}:{root}:val"
    if val_data.lower() == "none":
        return train_set, None, None
    vkind, vroot, vsplit = parse_spec(val_data)
    val_set = load_dataset(vkind, vroot, vsplit or "val", transform=EvalTransform(eval_size), **val_opts)
    if val_set.num_classes != train_set.num_classes:
        raise EdgesegError(f"--val-data {val_data} has {val_set.num_classes} classes, "
                           f"--data {data} has {train_set.num_classes}")
    return train_set, val_set, val_data


def _take_num_classes(overrides: dict[str, Any], num_classes: int, data: str) -> None:
    """Drop ``--set num_classes`` when it agrees with the data (the data decides the class count)."""
    if "num_classes" not in overrides:
        return
    if overrides["num_classes"] != num_classes:
        raise EdgesegError(f"--set num_classes={overrides['num_classes']}: the class count comes from "
                           f"--data {data}, which has {num_classes} classes; drop the --set")
    del overrides["num_classes"]


def _resume_hint(out_dir: Path, resumed: bool) -> str:
    """The one line after Ctrl-C / SIGTERM: what ``last.pt`` holds and how to continue from it."""
    from edgeseg.train.checkpoint import load_checkpoint
    from edgeseg.train.loop import RUN_FILES

    last = out_dir / "last.pt"
    if not last.is_file():
        again = "with --overwrite" if any((out_dir / n).exists() for n in RUN_FILES) else "the same way"
        return f"no checkpoint was written yet in {out_dir}; start again {again}"
    iteration = load_checkpoint(last)["iteration"]
    again = "run the same command again" if resumed else "add --resume to the same command"
    return f"{last} holds iteration {iteration}; to continue from there, {again}"


def _summary(result: TrainResult, card: ModelCard, bundle: Path, data: str,
             val_data: str | None) -> dict[str, Any]:
    best = None if math.isnan(result.best_miou) else result.best_miou
    return {"model": card.preset, "overrides": card.overrides, "data": data, "val_data": val_data,
            "iterations": result.iterations, "final_loss": result.loss, "metrics": result.metrics,
            "best_miou": best, "best_iteration": result.best_iteration,
            "wall_time_s": round(result.wall_time_s, 2), "cpu_time_s": round(result.cpu_time_s, 2),
            "train_time_s": round(result.train_time_s, 2),
            "bundle": str(bundle), "out_dir": str(result.out_dir)}


def _print_table(summary: dict[str, Any], config: TrainConfig) -> None:
    from rich.table import Table

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    m = summary["metrics"]
    table = Table(title="edgeseg train", show_header=False)
    table.add_row("model", summary["model"] + "".join(f" {k}={v}" for k, v in summary["overrides"].items()))
    table.add_row("data", f"{summary['data']} (val: {summary['val_data'] or 'none'})")
    table.add_row("iterations", f"{summary['iterations']} × batch {config.batch_size}")
    table.add_row("final loss", f"{summary['final_loss']:.4f}")
    table.add_row("final mIoU / PA", f"{pct(m.get('miou'))} / {pct(m.get('pa'))}")
    table.add_row("best mIoU", f"{pct(summary['best_miou'])} (iter {summary['best_iteration']})")
    table.add_row("time", f"{summary['wall_time_s']:.1f} s this run ({summary['cpu_time_s']:.1f} CPU s), "
                          f"{summary['train_time_s']:.1f} s in total")
    table.add_row("bundle", summary["bundle"])
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("train", help=_HELP, epilog=EXIT_CODES_HELP)
    def train(
        model: str = typer.Option("dbmsnet_r18_os16", "--model", "-m", help="Model preset name."),
        data: str = typer.Option(..., "--data", "-d", help="Training data KIND:ROOT[:split], kinds voc, "
                                 "cityscapes, celebamask, folder, synthetic (e.g. `synthetic`, "
                                 "`voc:/data/VOC2012`). Split defaults to train."),
        val_data: str | None = typer.Option(None, "--val-data", help="Validation data KIND:ROOT[:split]. "
                                            "Defaults to the --data set's val split (none for `folder`); "
                                            "`none` disables evaluation."),
        sets: list[str] = typer.Option([], "--set", help="Model config override key=value, repeatable "
                                       "(e.g. --set width=0.5 --set aux_loss=true)."),
        data_opts: list[str] = typer.Option([], "--data-opt", help="Training dataset option key=value, "
                                            "e.g. num_images=500 or size=128 for synthetic."),
        val_opts: list[str] = typer.Option([], "--val-opt", help="Validation dataset option key=value."),
        aug: list[str] = typer.Option([], "--aug", help="Augmentation override key=value: scales, "
                                      "max_rotation, hflip_p, vflip_p, brightness, contrast, saturation. "
                                      "Defaults to the DBMSNet paper recipe."),
        iters: int = typer.Option(1000, "--iters", help="Total iterations (optimizer steps)."),
        batch_size: int = typer.Option(8, "--batch-size", "-b", help="Global batch size (split between "
                                       "DDP processes)."),
        crop: str | None = typer.Option(None, "--crop", help="Training crop HxW (or one size for square). "
                                        "Defaults to 512x512, or the image size of synthetic data."),
        eval_size: str | None = typer.Option(None, "--eval-size", help="Resize validation images to "
                                             "HxW. Defaults to their own size."),
        lr: float = typer.Option(0.01, "--lr", help="Base learning rate of the poly schedule."),
        momentum: float = typer.Option(0.9, "--momentum", help="SGD momentum."),
        weight_decay: float = typer.Option(4e-5, "--weight-decay", help="SGD weight decay."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Run folder. Defaults to runs/MODEL."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt with the same "
                                    "schedule options."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in OUT "
                                       "(its checkpoints, log, summary and bundle)."),
        eval_every: int = typer.Option(500, "--eval-every", help="Evaluate every N iterations (0: only "
                                       "at the end)."),
        checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Write last.pt every N "
                                             "iterations."),
        log_every: int = typer.Option(10, "--log-every", help="Write a log.jsonl record every N iterations."),
        val_batch_size: int = typer.Option(4, "--val-batch-size", help="Evaluation batch size."),
        workers: int = typer.Option(2, "--workers", "-j", help="DataLoader worker processes per process."),
        seed: int = typer.Option(0, "--seed", help="Seed of weights, data order and augmentation."),
        deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels only "
                                           "(bit-exact reruns and resumes; slower on GPUs)."),
        amp: str = typer.Option("auto", "--amp", help="Mixed precision on CUDA: auto, off, bf16, fp16."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm under DDP: statistics over "
                                     "the global batch, as in one process (CUDA only)."),
        threads: int | None = typer.Option(None, "--threads", help="torch intra-op CPU threads. "
                                           "Defaults to torch's choice."),
        export_bundle: Path | None = typer.Option(None, "--export-bundle", help="Where to write the final "
                                                  "deployable bundle. Defaults to OUT/model.pt."),
        json_out: bool = typer.Option(False, "--json", help="Also print the summary as JSON on stdout."),
    ) -> None:
        import json

        import torch

        from edgeseg._io import write_json
        from edgeseg.checkpoint import ModelCard, save_model
        from edgeseg.models import build_model
        from edgeseg.train import TrainConfig, fit
        from edgeseg.train.distributed import init_from_env, shutdown
        from edgeseg.train.loop import check_run_dir
        from edgeseg.train.rng import seed_everything, set_deterministic

        if threads is not None:
            if threads < 1:
                raise EdgesegError(f"--threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        out_dir = out or Path("runs") / model
        check_run_dir(out_dir, resume=resume, overwrite=overwrite)  # before any data is read
        config = TrainConfig(iters=iters, batch_size=batch_size, lr=lr, momentum=momentum,
                             weight_decay=weight_decay, eval_every=eval_every,
                             checkpoint_every=checkpoint_every, log_every=log_every,
                             val_batch_size=val_batch_size, num_workers=workers, amp=amp, device=device,
                             seed=seed, deterministic=deterministic, sync_bn=sync_bn, out_dir=str(out_dir))
        crop_hw = parse_hw(crop, "--crop") if crop else None
        eval_hw = parse_hw(eval_size, "--eval-size") if eval_size else None
        overrides = parse_sets(sets)
        info = init_from_env(use_cuda=device == "cuda" or (device == "auto" and torch.cuda.is_available()))
        try:
            # Deterministic mode and the seed must be in place before the weights are drawn.
            if deterministic:
                set_deterministic(True)
            seed_everything(seed)
            train_set, val_set, val_spec = _datasets(data, val_data, crop_hw, parse_sets(aug), eval_hw,
                                                     parse_sets(data_opts), parse_sets(val_opts), seed)
            transform = train_set.transform
            _take_num_classes(overrides, train_set.num_classes, data)
            net = build_model(model, num_classes=train_set.num_classes, **overrides)
            card = ModelCard(preset=model, num_classes=train_set.num_classes, overrides=overrides,
                             class_names=list(train_set.class_names),
                             palette=[list(c) for c in train_set.palette], mean=transform.mean,
                             std=transform.std, input_size=eval_hw or transform.crop_size, dataset=data)
            if info.is_main:
                console.print(f"[bold]edgeseg train[/] {model} on {data}: {len(train_set)} training samples, "
                              f"{len(val_set) if val_set is not None else 0} validation, "
                              f"{info.world_size} process(es) → {out_dir}")
            try:
                result = fit(net, train_set, config, card, val_set=val_set, resume=resume,
                             overwrite=overwrite, console=console)
            except KeyboardInterrupt:
                raise interrupted(_resume_hint(out_dir, resume)) from None
            bundle = export_bundle or out_dir / "model.pt"
            summary = _summary(result, card, bundle, data, val_spec)
            if info.is_main:
                scalars = ("miou", "pa", "mpa", "fwiou")
                card.metrics = {k: result.metrics[k] for k in scalars if result.metrics.get(k) is not None}
                save_model(bundle, net, card)
                write_json(out_dir / "summary.json", summary)
                _print_table(summary, config)
                if json_out:
                    print(json.dumps(summary, indent=2))
        finally:
            shutdown()
