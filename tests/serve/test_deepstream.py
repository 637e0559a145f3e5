"""export-deepstream: the INI is what nvinfer reads, and its preprocessing + graph equal the card's."""

from __future__ import annotations

import configparser
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeseg._io import write_json
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners import OnnxrtRunner
from edgeseg.serve import export_deepstream
from edgeseg.serve.deepstream import deepstream_normalisation


def _read(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return dict(parser["property"])


def test_config_matches_model_io(rt_build: Path, rt_card: ModelCard, tmp_path: Path) -> None:
    result = export_deepstream(rt_build, tmp_path)
    props = _read(tmp_path / "config_infer_tiny.txt")
    assert props == result.properties
    assert "\nnetwork-type=2\n" in (tmp_path / "config_infer_tiny.txt").read_text()  # key=value lines
    assert props["network-type"] == "2" and props["network-mode"] == "0"  # segmentation, FP32
    assert props["num-detected-classes"] == "3" and props["model-color-format"] == "0"
    assert props["infer-dims"] == "3;32;48" and props["batch-size"] == "1"
    assert props["segmentation-output-order"] == "0" and float(props["segmentation-threshold"]) == 0.0
    assert (tmp_path / props["onnx-file"]).is_file()
    assert (tmp_path / props["labelfile-path"]).read_text().split() == rt_card.class_names
    exported = onnx.load(tmp_path / props["onnx-file"])
    assert [i.name for i in exported.graph.input] == ["images"]
    assert [o.name for o in exported.graph.output] == [props["output-blob-names"]] == ["probs"]
    offsets = [float(v) for v in props["offsets"].split(";")]
    np.testing.assert_allclose(offsets, [255 * m for m in rt_card.mean], rtol=1e-9)


def test_nvinfer_preprocessing_reproduces_card_normalisation(
    rt_build: Path, rt_model: torch.nn.Module, rt_card: ModelCard, tmp_path: Path
) -> None:
    """Feed the graph what nvinfer computes, y = s * (x - offsets[c]); get softmax of the true logits."""
    props = export_deepstream(rt_build, tmp_path).properties
    scale = float(props["net-scale-factor"])
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32).reshape(1, 3, 1, 1)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 48)).astype(np.float32)
    nvinfer_input = (scale * (pixels - offsets)).astype(np.float32)
    with OnnxrtRunner(tmp_path / props["onnx-file"]) as runner:
        probs = runner.infer({"images": nvinfer_input})["probs"]
    mean = torch.tensor(rt_card.mean).view(1, 3, 1, 1)
    std = torch.tensor(rt_card.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(rt_model((torch.from_numpy(pixels) / 255 - mean) / std), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # Without the fold, nvinfer's single scale would be measurably off for ImageNet's std.
    naive = np.abs(scale * (pixels - offsets) - (pixels / 255 - mean.numpy()) / std.numpy()).max()
    assert naive > 1e-2


def test_uniform_std_needs_no_fold(rt_build: Path, rt_card: ModelCard, tmp_path: Path) -> None:
    build = tmp_path / "uniform"
    shutil.copytree(rt_build, build)
    write_json(
        build / "card.json", dataclasses.replace(rt_card, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).to_dict()
    )
    result = export_deepstream(build, tmp_path / "out")
    assert result.channel_factors == [1.0, 1.0, 1.0]
    assert float(result.properties["net-scale-factor"]) == pytest.approx(1 / 127.5)
    assert "Mul" not in [n.op_type for n in onnx.load(result.onnx_path).graph.node[:1]]


def test_fp16_precision_and_normalisation_helper(rt_build: Path, tmp_path: Path) -> None:
    result = export_deepstream(rt_build, tmp_path, precision="fp16", gie_unique_id=3, threshold=0.5)
    assert result.properties["network-mode"] == "2" and result.properties["gie-unique-id"] == "3"
    scale, offsets, factors = deepstream_normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        assert factors[c] * scale * (200 - offsets[c]) == pytest.approx((200 / 255 - m) / s)


def test_labels_graph_and_bad_options_refused(
    rt_build: Path, rt_static_build: Callable[..., Path], tmp_path: Path
) -> None:
    with pytest.raises(EdgesegError, match="threshold"):
        export_deepstream(rt_build, tmp_path, threshold=-0.1)
    build = rt_static_build(1, argmax=True, name="argmax")
    with pytest.raises(EdgesegError, match="argmax"):
        export_deepstream(build, tmp_path / "out")


def test_edited_graph_is_refused(rt_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "edited"
    shutil.copytree(rt_build, build)
    with open(build / "model.fp16.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgesegError, match=r"model\.fp16\.onnx: changed since it was built"):
        export_deepstream(build, tmp_path / "out", precision="fp16")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_fp16_output_is_widened_for_nvinfer(rt_build: Path, tmp_path: Path) -> None:
    """nvinfer's parser reads FP32 only: an FP16 logits output gets softmax then a Cast to FP32."""
    build = tmp_path / "half_out"
    shutil.copytree(rt_build, build)
    model = onnx.load(build / "model.fp16.onnx")
    last = model.graph.node[-1]  # the fixture's Cast(logits_fp16 -> logits): drop it
    assert last.op_type == "Cast"
    model.graph.node.remove(last)
    for node in model.graph.node:
        node.output[:] = ["logits" if o == last.input[0] else o for o in node.output]
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(model, build / "model.fp16.onnx")
    from edgeseg.build_folder import BuildRecord

    # Recorded as a build would (an unrecorded edit is refused: see test_edited_graph_is_refused).
    BuildRecord(build).record("fp16", inputs={}, outputs={"onnx": build / "model.fp16.onnx"}, options={})
    result = export_deepstream(build, tmp_path / "out", precision="fp16")
    exported = onnx.load(result.onnx_path)
    assert exported.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    with OnnxrtRunner(result.onnx_path, graph_optimization="disabled") as runner:
        probs = runner.infer({"images": np.zeros((1, 3, 32, 48), np.float32)})["probs"]
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-2)
