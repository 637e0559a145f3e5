"""Cards whose network takes NHWC or BGR: every consumer feeds them correctly or refuses in one line.

The network is ``tiny_graphs``' 1x1 conv over (B, G, R), whose class map changes when it is fed RGB
or NCHW memory read as NHWC. Two ways such a card reaches a consumer:

* ``edgeseg build -m net.onnx --layout nhwc --channels bgr``: the build folds the conversion into
  its graph, so its card says nchw/rgb and every consumer feeds it as usual;
* a hand-written card beside a graph that takes NHWC/BGR itself (here a build folder laid out by
  hand, as ``tests/conftest.py``'s ``rt_build``): the Segmenter (and the video pipeline on it) and
  bench feed it as the card says; validate refuses; Triton passes the card to its clients;
  DeepStream sets ``model-color-format`` for BGR and refuses NHWC.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_graphs import nhwc_bgr_graph, nhwc_bgr_reference

import edgeseg
from edgeseg._io import read_json, write_json
from edgeseg.build_folder import BuildRecord
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners import OnnxrtRunner
from edgeseg.runtime import Segmenter
from edgeseg.serve import export_deepstream, export_triton

SIZE = (16, 24)
MEAN, STD = (10.0, 120.0, 240.0), (50.0, 60.0, 70.0)  # 0..255 units, distinct per channel


def _frames(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *SIZE, 3), dtype=np.uint8)


def _card(layout: str, channels: str) -> ModelCard:
    return ModelCard(preset="onnx:net", num_classes=3, input_size=SIZE, layout=layout, channels=channels,
                     mean=tuple(m / 255 for m in MEAN), std=tuple(s / 255 for s in STD))


def _logits(seg: Segmenter, frames: np.ndarray, color: str = "rgb") -> np.ndarray:
    return np.stack([r.logits for r in seg(list(frames), logits=True, color=color)])


def _hand_folder(root: Path, layout: str, channels: str) -> Path:
    """A build folder holding the raw BGR graph and a hand-written card saying what it takes."""
    root.mkdir(parents=True)
    nhwc_bgr_graph(root / "model.onnx", SIZE, dynamic_batch=True, layout=layout)
    write_json(root / "card.json", _card(layout, channels).to_dict())
    record = BuildRecord(root)
    record.meta["options"] = {"precision": "fp32"}
    record.record("export", inputs={}, outputs={"onnx": root / "model.onnx"}, options={})
    return root


@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_segmenter_feeds_an_nhwc_bgr_card_as_it_says(tmp_path: Path, color: str) -> None:
    frames = _frames()
    expected = nhwc_bgr_reference(frames, MEAN, STD)
    given = frames[..., ::-1].copy() if color == "bgr" else frames
    with Segmenter.load(_hand_folder(tmp_path / "b", "nhwc", "bgr"), backend="onnxruntime") as seg:
        np.testing.assert_allclose(_logits(seg, given, color), expected, atol=1e-4)
    # The same graph fed RGB (a card that forgot `channels`) computes something else: the check can fail.
    with Segmenter(OnnxrtRunner(tmp_path / "b" / "model.onnx"), _card("nhwc", "rgb")) as wrong:
        assert np.abs(_logits(wrong, given, color) - expected).max() > 0.5


def test_segmenter_refuses_a_layout_the_graph_contradicts(tmp_path: Path) -> None:
    graph = nhwc_bgr_graph(tmp_path / "net.onnx", SIZE)
    with pytest.raises(EdgesegError, match=r"input 'pixels' has shape \[1, 16, 24, 3\], but the model card's "
                                           r"layout 'nchw' means \(N, 3, H, W\)"):
        Segmenter(OnnxrtRunner(graph), _card("nchw", "bgr"))


def test_validate_refuses_and_bench_runs_a_hand_written_nhwc_card(tmp_path: Path) -> None:
    from edgeseg.bench import plan_cases
    from edgeseg.validate import validate

    folder = _hand_folder(tmp_path / "b", "nhwc", "bgr")
    with pytest.raises(EdgesegError, match=r"card.json: layout 'nhwc': edgeseg validate feeds NCHW input"):
        validate(folder, images=tmp_path, write=False)
    cases, _, size = plan_cases(folder, backends=["onnxruntime"])
    (case,) = cases
    case.open()
    try:
        out = case.make_step(2, size)()  # type: ignore[arg-type]
    finally:
        case.close()
    assert out["scores"].shape == (2, 3, *SIZE)


def test_triton_tells_clients_the_cards_layout_and_channels(tmp_path: Path) -> None:
    folder = _hand_folder(tmp_path / "b", "nhwc", "bgr")
    result = export_triton(folder, tmp_path / "repo", backend="onnxruntime")
    assert "NHWC BGR" in result.config_path.read_text()
    assert result.config["input"][0]["dims"] == [*SIZE, 3]  # the graph's own dims, batch owned by Triton
    copied = read_json(result.model_dir / "card.json")
    assert (copied["layout"], copied["channels"]) == ("nhwc", "bgr")


def test_deepstream_sets_bgr_and_refuses_nhwc(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match=r"card.json: layout 'nhwc': export-deepstream feeds NCHW input"):
        export_deepstream(_hand_folder(tmp_path / "nhwc", "nhwc", "bgr"), tmp_path / "ds")
    result = export_deepstream(_hand_folder(tmp_path / "nchw", "nchw", "bgr"), tmp_path / "ds")
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(result.config_path)
    props = dict(parser["property"])
    assert props["model-color-format"] == "1"
    # What nvinfer feeds: BGR planes, y = net-scale-factor * (x - offsets[c]); the graph folds the rest.
    frames = _frames()
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32).reshape(1, 3, 1, 1)
    planes = frames[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    fed = (float(props["net-scale-factor"]) * (planes - offsets)).astype(np.float32)
    with OnnxrtRunner(result.onnx_path) as runner:
        probs = runner.infer({"pixels": fed})["probs"]
    scores = nhwc_bgr_reference(frames, MEAN, STD)
    expected = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_a_build_folds_nhwc_bgr_into_its_graph_and_the_runtime_feeds_it(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(_frames(4, seed=1)):
        Image.fromarray(frame).save(images / f"{i}.png")
    graph = nhwc_bgr_graph(tmp_path / "net.onnx", SIZE)
    result = edgeseg.build(str(graph), layout="nhwc", channels="bgr", mean=MEAN, std=STD, precision="fp32",
                           out_dir=tmp_path / "engines", calib_data=str(images), val_size=4)
    card = read_json(result.folder / "card.json")
    assert (card["layout"], card["channels"]) == ("nchw", "rgb")
    assert read_json(result.folder / "report.json")["passed"] is True
    frames = _frames(seed=2)
    with Segmenter.load(result.folder, backend="onnxruntime") as seg:
        np.testing.assert_allclose(_logits(seg, frames), nhwc_bgr_reference(frames, MEAN, STD), atol=1e-4)
    props = export_deepstream(result.folder, tmp_path / "ds").properties
    assert props["model-color-format"] == "0"  # the graph takes RGB now
