"""DDP on the CPU: two gloo processes must match each other and single-process training."""

import dataclasses
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_nets import TinySegNet

from edgeseg.errors import EdgesegError
from edgeseg.train import TrainConfig, fit
from edgeseg.train.checkpoint import load_checkpoint

from ._tiny import TinySegSet, tiny_card


def _config(out: Path) -> TrainConfig:
    # 9 samples, global batch 4: two steps per epoch, the 9th sample dropped, 5 steps cross epochs.
    return TrainConfig(iters=5, batch_size=4, lr=0.1, eval_every=5, checkpoint_every=5, num_workers=0,
                       device="cpu", seed=7, out_dir=str(out))


def _model() -> TinySegNet:
    torch.manual_seed(0)
    # No BatchNorm: each process would normalise with its own half-batch statistics, which is a
    # different computation from one process seeing the whole batch.
    return TinySegNet(stride=1, bn=False)


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _model()
        if rank == 1:  # different initial weights: DDP must broadcast rank 0's
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        result = fit(model, TinySegSet(9), _config(Path(out)), tiny_card(), val_set=TinySegSet(5, seed=1),
                     show_progress=False)
        torch.save({"state_dict": model.state_dict(), "miou": result.metrics["miou"]}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_match_single_process_training(tmp_path):
    ddp_out = tmp_path / "ddp"
    ddp_out.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(ddp_out)), nprocs=2, join=True)
    r0 = torch.load(ddp_out / "rank0.pt", weights_only=True)
    r1 = torch.load(ddp_out / "rank1.pt", weights_only=True)

    single = _model()
    result = fit(single, TinySegSet(9), _config(tmp_path / "single"), tiny_card(),
                 val_set=TinySegSet(5, seed=1), show_progress=False)
    for k, v in single.state_dict().items():
        assert torch.equal(r0["state_dict"][k], r1["state_dict"][k]), f"ranks disagree on {k}"
        # Averaging two half-batch means equals the full-batch mean up to float rounding.
        torch.testing.assert_close(r0["state_dict"][k], v, rtol=1e-5, atol=1e-6)
    # Sharded evaluation sums both ranks' confusion matrices: the whole val set, not half of it.
    assert r0["miou"] == r1["miou"]
    assert abs(r0["miou"] - result.metrics["miou"]) < 1.0  # a rounding-level weight change may flip a pixel

    # Only rank 0 writes; its checkpoint records both ranks' RNG states for an exact resume.
    ckpt = load_checkpoint(ddp_out / "last.pt")
    assert ckpt["iteration"] == 5 and len(ckpt["rng"]) == 2
    assert ckpt["sampler"]["num_replicas"] == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert ckpt["batch_norm"] == {"sync": False, "world_size": 2, "has_batchnorm": False, "stats_batch": 2}


def _bn_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = dataclasses.replace(_config(Path(out)), iters=1, sync_bn=True)
        try:
            fit(TinySegNet(stride=1), TinySegSet(9), config, tiny_card(), show_progress=False)
            refused = ""
        except EdgesegError as e:
            refused = str(e)
        fit(TinySegNet(stride=1), TinySegSet(9), dataclasses.replace(config, sync_bn=False), tiny_card(),
            show_progress=False)
        torch.save({"refused": refused}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_on_the_cpu_refuses_sync_bn_and_records_per_process_batchnorm(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_bn_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    for rank in (0, 1):
        refused = torch.load(out / f"rank{rank}.pt", weights_only=True)["refused"]
        assert refused.startswith("--sync-bn: torch's SyncBatchNorm does not run on cpu (only on cuda")
    # Each process normalised with its own 2 samples of the global batch of 4, and the checkpoint says so.
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["batch_norm"] == {"sync": False, "world_size": 2, "has_batchnorm": True, "stats_batch": 2}


def test_single_process_batchnorm_sees_the_whole_batch(tmp_path):
    fit(TinySegNet(stride=1), TinySegSet(9), dataclasses.replace(_config(tmp_path), iters=1, sync_bn=True),
        tiny_card(), show_progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["batch_norm"] == {
        "sync": False, "world_size": 1, "has_batchnorm": True, "stats_batch": 4}
