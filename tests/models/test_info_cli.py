"""``edgeseg info`` and the MAC / parameter counting behind it."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from torch import nn

from edgeseg.checkpoint import ModelCard, save_model
from edgeseg.cli import main
from edgeseg.models import build_model
from edgeseg.models.summary import summarize_model


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    main(["info", *args, "--json"])
    return json.loads(capsys.readouterr().out)


def test_summary_counts_convolution_macs_exactly() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8 out × 3·9 taps × 10·12 pixels
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),  # depthwise: 8 × 9 × 120
        nn.Conv2d(8, 4, 1, stride=2),  # 4 × 8 × 5·6
    )
    s = summarize_model(net, (10, 12), batch=2)
    assert s.macs == 2 * (8 * 27 * 120 + 8 * 9 * 120 + 4 * 8 * 30)
    assert s.params == sum(p.numel() for p in net.parameters())
    assert s.output_shape == (2, 4, 5, 6) and s.output_stride is None
    assert next(net.parameters()).device.type == "cpu"  # counted on a meta copy


def test_summary_modules_add_up() -> None:
    model = build_model("dbmsnet_r18_os16", width=0.25)
    s = summarize_model(model, (64, 96))
    assert sum(m["macs"] for m in s.modules.values()) == s.macs
    assert sum(m["params"] for m in s.modules.values()) == s.params
    assert s.modules["backbone"]["macs"] > 0  # driven through forward_intermediates, still counted
    assert model.training  # mode restored


def test_info_json_for_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    info = _run_json(capsys, "-m", "dbmsnet_r18_os16", "--set", "width=0.25", "--input", "64x96")
    real = build_model("dbmsnet_r18_os16", width=0.25)
    assert info["params"] == sum(p.numel() for p in real.parameters())
    assert info["gmacs"] == pytest.approx(summarize_model(real, (64, 96)).gmacs, abs=1e-3)
    assert info["output_shape"] == [1, 19, 64, 96] and info["output_stride"] == 16
    assert info["config"]["width"] == 0.25 and info["source"] == "preset"
    os8 = _run_json(
        capsys, "-m", "dbmsnet_r18_os16", "--set", "output_stride=8", "--input", "64", "--num-classes", "3"
    )
    assert os8["output_stride"] == 8 and os8["output_shape"] == [1, 3, 64, 64]
    assert os8["gmacs"] > info["gmacs"]  # dilated layer3/layer4 run at 4× / 16× the pixels


def test_info_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    main(["info", "-m", "fcn8s_vgg16", "--input", "64x64"])
    err = capsys.readouterr().err
    assert "GMACs" in err and "output stride" in err and "head" in err


def test_info_for_a_bundle_uses_its_input_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = ModelCard(preset="dbmsnet_r18_os16", num_classes=4, overrides={"width": 0.25}, input_size=(48, 80))
    model = build_model("dbmsnet_r18_os16", num_classes=4, width=0.25)
    save_model(tmp_path / "m.pt", model, card)
    info = _run_json(capsys, "-m", str(tmp_path / "m.pt"))
    assert info["source"] == "bundle" and info["preset"] == "dbmsnet_r18_os16"
    assert info["input_shape"] == [1, 3, 48, 80] and info["output_shape"] == [1, 4, 48, 80]
    assert info["params"] == sum(p.numel() for p in model.parameters())
    with pytest.raises(SystemExit) as e:
        main(["info", "-m", str(tmp_path / "m.pt"), "--set", "width=1.0"])
    assert e.value.code == 2


def test_info_for_an_onnx_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.1] * 12)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Relu", ["r"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=[w],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    info = _run_json(capsys, "-m", str(path))
    assert info["ops"] == {"Relu": 2, "Conv": 1}
    assert info["inputs"] == {"images": ["N", 3, 8, 8]} and info["outputs"] == {"logits": ["N", 4, 8, 8]}
    assert info["params"] == 12 and info["opsets"] == {"ai.onnx": 17}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "dbmsnet_r18_os16", "--set", "depth=50"], "valid keys: num_classes, backbone"),
        (["-m", "no_such_model"], "unknown model preset"),
        (["-m", "missing/model.pt"], "file not found"),
        (["-m", "dbmsnet_r18_os16", "--input", "64x"], "--input expects HxW"),
        ([], "give a model"),
        (["-m", "fcn8s_vgg16", "--num-classes", "5", "--set", "num_classes=7"], "disagree; give one of them"),
    ],
)
def test_info_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["info", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_set_num_classes_is_the_class_count(capsys: pytest.CaptureFixture[str]) -> None:
    info = _run_json(capsys, "-m", "fcn8s_vgg16", "--input", "64x64", "--set", "num_classes=7")
    assert info["output_shape"] == [1, 7, 64, 64] and info["config"]["num_classes"] == 7


def test_info_lists_presets(capsys: pytest.CaptureFixture[str]) -> None:
    main(["info", "--list", "--json"])
    assert "dbmsnet_r18_os16" in json.loads(capsys.readouterr().out)
