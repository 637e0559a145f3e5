import random

import numpy as np
import pytest
import torch
from tiny_nets import TinySegNet

from edgeseg.checkpoint import load_card
from edgeseg.errors import EdgesegError
from edgeseg.train.checkpoint import TRAIN_FORMAT, load_checkpoint, save_checkpoint
from edgeseg.train.config import TrainConfig
from edgeseg.train.rng import get_rng_state, set_rng_state
from edgeseg.train.schedule import PolyLR

from ._tiny import tiny_card


def _state(model: torch.nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = PolyLR(opt, 10)
    model.train()(torch.randn(2, 3, 8, 8))["out"].sum().backward()
    opt.step()  # creates momentum buffers, so the optimizer state is non-trivial
    sched.step()
    return {"card": tiny_card().to_dict(), "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": {},
            "iteration": 1, "rng": [get_rng_state()],
            "sampler": {"epoch": 0, "start": 2, "seed": 0, "num_replicas": 1},
            "config": TrainConfig(iters=10).to_dict(), "best": {"miou": 50.0, "iteration": 1},
            "metrics": {"miou": 50.0, "iou": {"c0": None}}}


def test_round_trip_loads_with_weights_only(tmp_path):
    model = TinySegNet(stride=1)
    state = _state(model)
    path = tmp_path / "last.pt"
    save_checkpoint(path, state)
    raw = torch.load(path, weights_only=True)  # the safe loader must accept every value
    assert raw["format"] == TRAIN_FORMAT
    ckpt = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)
    mom = state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(ckpt["optimizer"]["state"][0]["momentum_buffer"], mom)
    assert ckpt["scheduler"]["last_epoch"] == 1
    assert TrainConfig.from_dict(ckpt["config"]) == TrainConfig(iters=10)
    assert load_card(path) == tiny_card()  # the deployable-bundle reader understands it too


def test_rng_state_round_trip_replays_every_generator():
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_interrupted_save_keeps_previous_file_and_leaves_no_partial(tmp_path, monkeypatch):
    model = TinySegNet(stride=1)
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(model))
    before = path.read_bytes()

    def interrupted_save(obj, f, *args, **kwargs):
        f.write(b"PARTIAL" * 100)  # some bytes reach the disk, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(TinySegNet(stride=1)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(EdgesegError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgesegError, match="junk.pt"):
        load_checkpoint(junk)
    bundle = tmp_path / "bundle.pt"
    torch.save({"format": "edgeseg.model/1", "card": {}, "state_dict": {}}, bundle)
    with pytest.raises(EdgesegError, match="not an edgeseg training checkpoint"):
        load_checkpoint(bundle)


def test_missing_key_is_a_caller_bug(tmp_path):
    state = _state(TinySegNet(stride=1))
    del state["rng"]
    with pytest.raises(ValueError, match="rng"):
        save_checkpoint(tmp_path / "x.pt", state)
    assert not (tmp_path / "x.pt").exists()
