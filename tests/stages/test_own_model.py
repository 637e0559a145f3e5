"""`edgeseg build` on your own model: each source route, end to end, on tiny networks defined here.

Random weights: the accuracy guard and the validation gate get generous budgets, as in
test_executor.py. What is asserted is the plumbing: the artifacts, the card, and that the deployed
FP32 graph computes what the source model computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import edgeseg
from edgeseg._io import read_json
from edgeseg.errors import EdgesegError
from edgeseg.stages import Reporter


class _Notes(Reporter):
    def __init__(self) -> None:
        self.notes: list[str] = []
        self.stages: dict[str, str] = {}

    def note(self, message: str) -> None:
        self.notes.append(message)

    def stage(self, name: str, status: str, detail: str = "") -> None:
        self.stages[name] = status


class DictNHWC(nn.Module):
    """Takes NHWC, returns torchvision-style ``{"out", "aux"}`` with NHWC scores at 1/2 resolution."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, classes, 1)
        self.aux = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = F.relu(self.conv(x.permute(0, 3, 1, 2)))
        return {"out": self.head(y).permute(0, 2, 3, 1), "aux": self.aux(y)}


class BinarySigmoid(nn.Module):
    """A binary segmenter: one sigmoid channel at 1/4 resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(F.relu(self.conv(x))))


class TupleAux(nn.Module):
    """Returns ``(logits, aux)`` at full resolution."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3, padding=1)
        self.aux = nn.Conv2d(3, classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.aux(x)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    torch.set_num_threads(1)
    return {"root": root, "images": images, "engines": root / "engines"}


def _build(ws: dict[str, Path], model, reporter: Reporter | None = None, **options):
    base = dict(out_dir=ws["engines"], calib_data=str(ws["images"]), calib_size=4, val_size=4,
                max_miou_drop=100.0, min_agreement=0.0)
    return edgeseg.build(model, reporter=reporter, **{**base, **options})


def _ort(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def test_module_with_dict_nhwc_output_to_int8_with_the_guard(ws: dict[str, Path]) -> None:
    torch.manual_seed(0)
    net = DictNHWC().eval()
    reporter = _Notes()
    result = _build(ws, net, reporter, input_size=(32, 32), layout="nhwc", precision="int8",
                    val_data="synthetic::val", mean=(0, 0, 0), std=(255, 255, 255))
    folder = result.folder
    assert folder.name == "dictnhwc" and result.deploy_onnx == folder / "model.int8.onnx"
    card = read_json(folder / "card.json")
    # The graph takes NCHW RGB (the adapter folds the network's NHWC), fed [0, 1] pixels.
    assert card["layout"] == "nchw" and card["num_classes"] == 7 and card["std"] == [1.0, 1.0, 1.0]
    stages = read_json(folder / "build.json")["stages"]
    assert stages["card"]["results"]["source"] == {
        "kind": "module", "input_layout": "nhwc", "channels": "rgb", "output": "logits, NHWC",
        "output_shape": [1, 16, 16, 7]}
    assert stages["quantize"]["results"]["accuracy_guard"]["status"] == "done"  # the adapter as reference
    images = torch.randn(1, 3, 32, 32)
    expected = F.interpolate(net(images.permute(0, 2, 3, 1))["out"].permute(0, 3, 1, 2), size=(32, 32),
                             mode="bilinear", align_corners=False)
    np.testing.assert_allclose(_ort(folder / "model.onnx", images.numpy()), expected.detach().numpy(),
                               atol=1e-4, rtol=1e-4)
    # New weights, same class: the module's digest re-runs the export instead of reusing it.
    with torch.no_grad():
        net.head.bias += 1.0
    reporter = _Notes()
    _build(ws, net, reporter, input_size=(32, 32), layout="nhwc", precision="fp16")
    assert reporter.stages["export"] == "done"


def test_torch_export_program_to_fp16(ws: dict[str, Path]) -> None:
    torch.manual_seed(1)
    net = TupleAux().eval()
    path = ws["root"] / "tuple.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 24, 32),)), path)
    result = _build(ws, str(path), precision="fp16")
    folder = result.folder
    assert result.deploy_onnx == folder / "model.fp16.onnx" and folder.name == "tuple"
    card = read_json(folder / "card.json")
    assert card["input_size"] == [24, 32] and card["num_classes"] == 4 and card["preset"] == "program:tuple"
    images = torch.randn(1, 3, 24, 32)
    np.testing.assert_allclose(_ort(folder / "model.onnx", images.numpy()), net(images)[0].detach().numpy(),
                               atol=1e-4, rtol=1e-4)
    reporter = _Notes()
    _build(ws, str(path), reporter, precision="fp16")  # the same file: nothing to redo
    assert reporter.stages["card"] == reporter.stages["export"] == reporter.stages["fp16"] == "cached"


def test_binary_sigmoid_segmenter_to_fp16(ws: dict[str, Path]) -> None:
    torch.manual_seed(2)
    net = BinarySigmoid().eval()
    result = _build(ws, net, input_size=(32, 32), precision="fp16", name="binary")
    folder = result.folder
    assert read_json(folder / "card.json")["num_classes"] == 2
    images = torch.randn(1, 3, 32, 32)
    p = F.interpolate(net(images), size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    labels = _ort(folder / "model.fp16.onnx", images.numpy()).argmax(1)
    # Class 1 where the probability is above 0.5 (FP16 may flip pixels right at 0.5).
    assert (labels == (p > 0.5).numpy()).mean() > 0.99


def test_fp32_onnx_to_int8_and_fp16_with_onnx_as_the_reference(ws: dict[str, Path]) -> None:
    torch.manual_seed(3)
    net = DictNHWC(classes=5).eval()

    class Probs(nn.Module):  # an NHWC network exported with its softmax, as many are shipped
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x)["out"], dim=-1)

    path = ws["root"] / "probs.onnx"
    torch.onnx.export(Probs().eval(), (torch.zeros(1, 32, 32, 3),), path, dynamo=True, input_names=["input"],
                      output_names=["probs"])
    reporter = _Notes()
    result = _build(ws, str(path), reporter, precision="int8", channels="bgr")
    folder = result.folder
    assert result.deploy_onnx == folder / "model.int8.onnx"
    stages = read_json(folder / "build.json")["stages"]
    assert stages["card"]["results"]["source"]["output"] == "softmax probabilities, NHWC"
    assert stages["quantize"]["status"] == "done" and stages["calibrate"]["status"] == "done"
    assert read_json(folder / "card.json")["preset"] == "onnx:probs"
    # model.onnx, the build's reference, is the user's graph behind the adapter's nodes.
    images = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"input": images[:, ::-1].transpose(0, 2, 3, 1).copy()})
    expected = F.interpolate(torch.from_numpy(probs).permute(0, 3, 1, 2).clamp_min(1e-6).log(), size=(32, 32),
                             mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(_ort(folder / "model.onnx", images), expected, atol=1e-4, rtol=1e-4)
    fp16 = _build(ws, str(path), precision="fp16", channels="bgr")
    assert fp16.folder == folder and (folder / "model.fp16.onnx").is_file()


def test_contradicting_flag_is_refused_before_any_work(ws: dict[str, Path]) -> None:
    path = ws["root"] / "static.pt2"
    torch.export.save(torch.export.export(TupleAux().eval(), (torch.zeros(1, 3, 24, 32),)), path)
    with pytest.raises(EdgesegError, match=r"--input 32x32: .*static.pt2 \(static input shape\) fixes it"):
        _build(ws, str(path), precision="fp16", input_size=(32, 32))


def test_a_target_input_size_that_the_graph_contradicts_names_the_target(ws: dict[str, Path]) -> None:
    path = ws["root"] / "static24.pt2"
    torch.export.save(torch.export.export(TupleAux().eval(), (torch.zeros(1, 3, 24, 32),)), path)
    target = ws["root"] / "board.toml"
    target.write_text('description = "test board"\ntensorrt = "10"\ncompute_capability = "8.7"\n\n'
                      '[build]\nprecision = "fp16"\ninput = [64, 64]\n')
    with pytest.raises(EdgesegError, match=r"--target .*board.toml \(its input_size\) 64x64: .*static24.pt2"):
        _build(ws, str(path), target=str(target))


def test_cli_card_flags_are_one_line_errors(ws: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from edgeseg.cli import main

    path = ws["root"] / "cli.pt2"
    torch.export.save(torch.export.export(TupleAux().eval(), (torch.zeros(1, 3, 24, 32),)), path)
    for argv, message in (
        (["--mean", "0,0"], "error: --mean expects three numbers R,G,B in 0-255 pixel units"),
        (["--std", "255,0,255"], "error: --std must be 3 numbers in 0..255 pixel units, each > 0"),
        (["--layout", "chw"], "error: --layout must be nchw or nhwc, got 'chw'"),
        # fp16: an INT8 build without --calib-data is refused first, in the set-up
        (["--set", "width=0.5", "--precision", "fp16"],
         "error: --set: only a zoo preset takes config fields"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["build", "--model", str(path), "--out-dir", str(ws["engines"]), *argv])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert exit_info.value.code == 2 and len(errors) == 1 and errors[0].startswith(message), errors
