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


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", *TINY, "--iters", "1", "--val-data", "none", "--out", str(out)]
    main(args)
    first = (out / "last.pt").read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {out} already holds a training run (last.pt, log.jsonl, summary.json, model.pt); "
                   "pass --resume to continue it, --overwrite to replace it, or another --out")
    assert (out / "last.pt").read_bytes() == first  # untouched
    with pytest.raises(SystemExit) as exc:
        main([*args, "--resume", "--overwrite"])
    assert exc.value.code == 2 and "give one of them" in capsys.readouterr().err

    main([*args, "--overwrite", "--seed", "5"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log].count("start") == 1  # the old run's log is gone, not appended to
    assert log[0]["config"]["seed"] == 5 and (out / "last.pt").read_bytes() != first


def _folder_with_a_corrupt_image(root):
    import numpy as np
    from PIL import Image

    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / f"train/images/{i}.png")
        Image.fromarray(rng.integers(0, 3, (16, 16), dtype=np.uint8)).save(root / f"train/masks/{i}.png")
    bad = root / "train/images/2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return bad


def test_unreadable_sample_in_a_dataloader_worker_is_one_line(tmp_path, capsys):
    bad = _folder_with_a_corrupt_image(tmp_path / "data")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", f"folder:{tmp_path / 'data'}", "--data-opt", "num_classes=3", "-m",
              "dbmsnet_r18_os16", "--set", "width=0.25", "--crop", "16", "-b", "4", "-j", "2",
              "--iters", "2", "--threads", "1", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {bad}: unreadable image")
    assert not any("Traceback" in line or "worker" in line for line in err)


def test_set_num_classes_must_agree_with_the_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *TINY, "--iters", "1", "--out", str(tmp_path / "x"), "--set", "num_classes=4"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("error: --set num_classes=4: the class count comes from --data synthetic, which "
                        "has 7 classes; drop the --set")
    # The same count is accepted, and not stored twice in the card.
    main(["train", *TINY, "--iters", "1", "--val-data", "none", "--out", str(tmp_path / "y"),
          "--set", "num_classes=7"])
    _, card = load_model(tmp_path / "y" / "model.pt")
    assert card.num_classes == 7 and "num_classes" not in card.overrides
