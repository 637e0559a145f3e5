import json

import pytest
import torch
from tiny_nets import TinySegNet

from edgeseg.checkpoint import load_card
from edgeseg.errors import EdgesegError
from edgeseg.train import TrainConfig, fit
from edgeseg.train.checkpoint import load_checkpoint

from ._tiny import TinySegSet, tiny_card


@pytest.fixture
def deterministic():
    yield
    # fit(deterministic=True) switches the global flag on; do not leak it into other tests.
    torch.use_deterministic_algorithms(False)


class _InterruptAfter(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt on the (limit+1)-th sample read, like Ctrl-C during data loading."""

    def __init__(self, base: TinySegSet, limit: int) -> None:
        self.base, self.limit, self.reads = base, limit, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        self.reads += 1
        if self.reads > self.limit:
            raise KeyboardInterrupt
        return self.base[i]


def _config(tmp_path, name: str, **kw) -> TrainConfig:
    base = dict(iters=8, batch_size=2, lr=0.05, eval_every=3, checkpoint_every=3, log_every=1,
                num_workers=0, val_batch_size=2, device="cpu", seed=3, deterministic=True,
                out_dir=str(tmp_path / name))
    return TrainConfig(**(base | kw))


def _model(seed: int) -> TinySegNet:
    torch.manual_seed(seed)
    return TinySegNet(stride=1, dropout=0.2)  # dropout + flip: the run consumes the global RNG


def test_resume_reproduces_uninterrupted_run_bitwise(tmp_path, deterministic):
    # 5 samples / batch 2 -> 2 steps per epoch: the interruption after step 3 is mid-epoch.
    train, val = TinySegSet(5, flip=True), TinySegSet(4, seed=1)
    full = fit(_model(0), train, _config(tmp_path, "full"), tiny_card(), val_set=val, show_progress=False)
    assert full.iterations == 8

    with pytest.raises(KeyboardInterrupt):
        fit(_model(0), _InterruptAfter(TinySegSet(5, flip=True), 3 * 2), _config(tmp_path, "cut"),
            tiny_card(), val_set=val, show_progress=False)
    cut_dir = tmp_path / "cut"
    assert load_checkpoint(cut_dir / "last.pt")["iteration"] == 3
    assert not [p.name for p in cut_dir.iterdir() if p.suffix == ".tmp"]

    # A differently initialised model: everything must come from last.pt.
    resumed = fit(_model(99), TinySegSet(5, flip=True), _config(tmp_path, "cut"), tiny_card(), val_set=val,
                  resume=True, show_progress=False)
    assert resumed.iterations == 8
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(cut_dir / "last.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert a["metrics"]["miou"] == b["metrics"]["miou"] == full.metrics["miou"] == resumed.metrics["miou"]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    events = [json.loads(line)["event"] for line in (cut_dir / "log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "resume" in events and events[-1] == "end"


def test_training_learns_and_writes_best_and_last(tmp_path):
    train, val = TinySegSet(8), TinySegSet(4, seed=1)
    cfg = _config(tmp_path, "run", iters=30, lr=0.1, eval_every=10, checkpoint_every=10, deterministic=False)
    torch.manual_seed(0)
    result = fit(TinySegNet(stride=1), train, cfg, tiny_card(), val_set=val, show_progress=False)
    # Colour -> class is easy (80-84 mIoU whatever the initial weights); chance is about 20.
    assert result.metrics["miou"] > 70.0
    assert result.best_miou >= result.metrics["miou"]
    assert result.best_checkpoint is not None
    best = load_checkpoint(result.best_checkpoint)
    assert best["iteration"] == result.best_iteration and best["best"]["miou"] == result.best_miou
    assert load_card(result.last_checkpoint) == tiny_card()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_lines = [r for r in log if r["event"] == "train"]
    assert [r["iter"] for r in train_lines] == list(range(1, 31))
    assert train_lines[0]["lr"] == 0.1 and train_lines[-1]["lr"] < 0.01
    assert {"loss", "loss_out", "loss_aux", "it_per_s", "cpu_time"} <= set(train_lines[0])
    assert [r["iter"] for r in log if r["event"] == "eval"] == [10, 20, 30]


def test_resume_refuses_a_changed_schedule(tmp_path):
    cfg = _config(tmp_path, "run", iters=2, deterministic=False)
    fit(TinySegNet(stride=1), TinySegSet(4), cfg, tiny_card(), show_progress=False)
    with pytest.raises(EdgesegError, match="lr"):
        fit(TinySegNet(stride=1), TinySegSet(4),
            _config(tmp_path, "run", iters=2, lr=0.5, deterministic=False), tiny_card(), resume=True,
            show_progress=False)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(EdgesegError, match="fewer than one batch"):
        fit(TinySegNet(stride=1), TinySegSet(3), _config(tmp_path, "a", batch_size=4), tiny_card(),
            show_progress=False)
    with pytest.raises(EdgesegError, match="CUDA"):
        fit(TinySegNet(stride=1), TinySegSet(4), _config(tmp_path, "b", amp="bf16"), tiny_card(),
            show_progress=False)
    with pytest.raises(EdgesegError, match="lr"):
        TrainConfig(lr=0)
