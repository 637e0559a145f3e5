"""`edgeseg export` takes the model card's options (one definition with `edgeseg build`'s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tiny_graphs import nhwc_bgr_graph, nhwc_bgr_reference

from edgeseg._io import read_json
from edgeseg.cli import main
from edgeseg.cli._common import _CARD_OPTIONS


def _option_names(command: str) -> set[str]:
    import typer.main

    from edgeseg.cli import app

    group = typer.main.get_command(app)
    return {opt for param in group.commands[command].params for opt in param.opts}  # type: ignore[attr-defined]


def test_build_and_export_share_every_card_option() -> None:
    card = {info.param_decls[0] for _, info in _CARD_OPTIONS.values()}
    assert card == {"--input", "--card", "--layout", "--channels", "--mean", "--std", "--num-classes",
                    "--classes", "--output-name"}
    assert card <= _option_names("build") and card <= _option_names("export")


def test_export_folds_an_nhwc_bgr_card_into_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = nhwc_bgr_graph(tmp_path / "net.onnx", (16, 24))
    (tmp_path / "classes.txt").write_text("sky\ngrass\nbrick\n")
    card = tmp_path / "card.yaml"
    # The file's channels/mean lose to the flags; its std and classes stay.
    card.write_text("channels: rgb\nmean: [1, 2, 3]\nstd: [255, 255, 255]\nclasses: classes.txt\n")
    main(["export", "-m", str(graph), "--out-dir", str(tmp_path / "engines"), "--card", str(card),
          "--layout", "nhwc", "--channels", "bgr", "--mean", "0,0,0", "--json"])
    folder = tmp_path / "engines" / "net"
    written = read_json(folder / "card.json")
    # The graph now takes NCHW RGB: the card says so, and keeps the normalisation and the names.
    assert (written["layout"], written["channels"]) == ("nchw", "rgb")
    assert written["mean"] == [0.0, 0.0, 0.0] and written["std"] == [1.0, 1.0, 1.0]
    assert written["class_names"] == ["sky", "grass", "brick"] and written["input_size"] == [16, 24]
    source = read_json(folder / "build.json")["stages"]["card"]["results"]["source"]
    assert (source["input_layout"], source["channels"]) == ("nhwc", "bgr")
    frames = np.random.default_rng(0).integers(0, 256, (1, 16, 24, 3)).astype(np.float32)
    images = (frames / 255.0).transpose(0, 3, 1, 2).astype(np.float32)  # NCHW RGB, the card's normalisation
    for name in ("model.onnx", "model.sim.onnx"):
        session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"images": images})
        np.testing.assert_allclose(logits, nhwc_bgr_reference(frames, (0, 0, 0), (255, 255, 255)), atol=1e-5)
    assert '"simplify"' in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--layout", "nchw"], "error: --layout nchw: {graph} (input shape (1, 16, 24, 3)) fixes it at nhwc"),
    (["--mean", "0,0"], "error: --mean expects three numbers R,G,B in 0-255 pixel units"),
    (["--channels", "gbr"], "error: --channels must be rgb or bgr, got 'gbr'"),
    (["--input", "32x32"], "error: --input 32x32: {graph} (static input shape) fixes it at 16x24"),
])
def test_export_card_flag_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                              message: str) -> None:
    graph = nhwc_bgr_graph(tmp_path / "net.onnx", (16, 24))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "-m", str(graph), "--out-dir", str(tmp_path / "engines"), *argv])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1, errors
    assert errors[0].startswith(message.format(graph=graph)), errors
    assert not (tmp_path / "engines" / "net" / "model.onnx").exists()


def test_a_build_with_the_same_card_options_reuses_the_export(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    graph = nhwc_bgr_graph(tmp_path / "net.onnx", (16, 24))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(
            images / f"{i}.png")
    card = ["-m", str(graph), "--out-dir", str(tmp_path / "engines"), "--layout", "nhwc", "--channels", "bgr"]
    main(["export", *card])
    capsys.readouterr()
    main(["build", *card, "--precision", "fp16", "--calib-data", str(images), "--val-size", "4"])
    err = capsys.readouterr().err
    for stage in ("card", "export", "simplify"):
        assert f" cached {stage} " in err, err
    assert "   done fp16 " in err
