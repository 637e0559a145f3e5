"""`edgeseg train` end to end on a tiny synthetic set (a quarter-width DBMSNet, 32x32 images)."""

import json

import pytest
import torch

from edgeseg.checkpoint import load_model
from edgeseg.cli import main
from edgeseg.cli._common import parse_hw
from edgeseg.errors import EdgesegError

TINY = ["-m", "dbmsnet_r18_os16", "--set", "width=0.25", "--set", "aux_loss=true", "--data", "synthetic",
        "--data-opt", "num_images=6", "--data-opt", "size=32", "--val-opt", "num_images=3",
        "--val-opt", "size=32", "-b", "2", "--workers", "0", "--threads", "1"]


def test_cli_trains_and_writes_a_loadable_bundle(tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", *TINY, "--iters", "3", "--eval-every", "2", "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 3 and summary["val_data"] == "synthetic::val"
    assert json.loads((out / "summary.json").read_text()) == summary

    model, card = load_model(out / "model.pt")
    assert card.preset == "dbmsnet_r18_os16" and card.overrides == {"width": 0.25, "aux_loss": True}
    assert card.num_classes == 7 and card.class_names[1] == "disc" and len(card.palette) == 7
    assert card.input_size == (32, 32) and card.dataset == "synthetic"
    assert card.metrics["miou"] == pytest.approx(summary["metrics"]["miou"])
    assert set(card.metrics) == {"miou", "pa", "mpa", "fwiou"}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7, 32, 32)
    # The run's training checkpoints are bundles as well, with the same final weights.
    last, _ = load_model(out / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(last.state_dict()[k], v)
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events.count("eval") == 2 and events[-1] == "end"


def test_cli_resume_continues_to_the_new_end(tmp_path):
    out = tmp_path / "run"
    args = ["train", *TINY, "--iters", "2", "--val-data", "none", "--log-every", "1", "--out", str(out)]
    main(args)
    # A finished run resumes as a no-op; the bundle is rewritten from last.pt's weights.
    main([*args, "--resume"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r["event"] in ("start", "resume")] == ["start", "resume"]
    assert [r["iter"] for r in log if r["event"] == "train"] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["final_loss"] == pytest.approx(log[2]["loss"])
    model, _ = load_model(out / "model.pt")
    last, _ = load_model(out / "last.pt")
    assert all(torch.equal(v, last.state_dict()[k]) for k, v in model.state_dict().items())


def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys):
    for bad in (["--crop", "12xx"], ["--set", "width=-1"], ["--data-opt", "colour=red"], ["--amp", "fp16"]):
        with pytest.raises(SystemExit) as exc:
            main(["train", *TINY, "--iters", "1", "--out", str(tmp_path / "x"), *bad])
        assert exc.value.code == 2, bad
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: "), (bad, err)


def test_parse_hw():
    assert parse_hw("512x1024", "--crop") == (512, 1024)
    assert parse_hw("96", "--crop") == (96, 96)
    with pytest.raises(EdgesegError, match="--crop"):
        parse_hw("0x5", "--crop")
