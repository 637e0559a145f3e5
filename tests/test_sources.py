"""edgeseg.sources: every kind of --model becomes a reference and a card, and contradictions are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.sources import (
    CardSpec,
    GraphFromOnnx,
    ModelFromModule,
    ModelFromProgram,
    check_graph_against_card,
    load_source,
    module_digest,
    resolve_model,
)


def _onnx_segmenter(path: Path, *, classes: int, stride: int = 1, nhwc: bool = False, last: str | None = None,
                    size: int = 32, batch: int | str = 1, opset: int = 17) -> Path:
    """A one-conv FP32 segmenter written with onnx.helper: NCHW or NHWC, logits or probabilities."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((classes, 3, 3, 3)).astype(np.float32), "w")
    nodes, x = [], "x"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    nodes.append(helper.make_node("Conv", [x, "w"], ["scores"], pads=[1, 1, 1, 1], strides=[stride, stride]))
    y = "scores"
    if last is not None:
        nodes.append(helper.make_node(last, [y], ["act"], **({"axis": 1} if last == "Softmax" else {})))
        y = "act"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [y], ["y_nhwc"], perm=[0, 2, 3, 1]))
        y = "y_nhwc"
    nodes.append(helper.make_node("Identity", [y], ["out"]))
    in_shape = [batch, size, size, 3] if nhwc else [batch, 3, size, size]
    graph = helper.make_graph(nodes, "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)
    return path


def _run(proto_or_path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    is_proto = hasattr(proto_or_path, "SerializeToString")
    data = proto_or_path.SerializeToString() if is_proto else str(proto_or_path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)


# --- the card ---------------------------------------------------------------------------------------
def test_card_file_keys_and_flags_over_it(tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text("road\n\ncar\n")
    card = tmp_path / "card.yaml"
    card.write_text("input: [24, 32]\nlayout: nhwc\nchannels: bgr\nmean: [0, 0, 0]\nstd: [255, 255, 255]\n"
                    "num_classes: 2\nclasses: names.txt\n")
    spec = CardSpec.from_file(card)
    assert (spec.input_size, spec.layout, spec.channels) == ((24, 32), "nhwc", "bgr")
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (255.0, 255.0, 255.0)
    assert spec.num_classes == 2 and spec.class_names == ["road", "car"]
    merged = CardSpec(layout="nchw", num_classes=3).over(spec)
    assert merged.layout == "nchw" and merged.num_classes == 3 and merged.channels == "bgr"
    assert merged.where["layout"] == "--layout" and merged.where["channels"].endswith("key 'channels'")


def test_card_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("input: [24, 32]\nresolution: 3\n")
    with pytest.raises(EdgesegError, match=r"--card .*card.yaml: unknown key\(s\) \['resolution'\]"):
        CardSpec.from_file(card)
    card.write_text("std: [255, 0, 255]\n")
    with pytest.raises(EdgesegError, match=r"--card .*card.yaml key 'std' must be 3 numbers .* each > 0"):
        CardSpec.from_file(card)
    with pytest.raises(EdgesegError, match="--layout must be nchw or nhwc, got 'hwc'"):
        CardSpec(layout="hwc")


def test_mean_and_std_flags_are_0_255_units_on_a_0_1_card() -> None:
    net = nn.Conv2d(3, 4, 1)
    spec = CardSpec(input_size=(16, 16), mean=(0, 0, 0), std=(255, 255, 255))
    card = ModelFromModule(net, spec)().card
    assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0)  # the network is fed [0, 1]
    assert card.num_classes == 4 and card.preset == "module:Conv2d"


# --- resolving --model --------------------------------------------------------------------------------
def test_resolve_model_kinds(tmp_path: Path) -> None:
    (tmp_path / "a.pt2").write_bytes(b"x")
    (tmp_path / "b.onnx").write_bytes(b"x")
    (tmp_path / "c.pt").write_bytes(b"x")
    assert resolve_model(str(tmp_path / "a.pt2")).kind == "program"
    assert resolve_model(str(tmp_path / "b.onnx")).kind == "onnx"
    assert resolve_model(str(tmp_path / "c.pt")).kind == "checkpoint"
    assert resolve_model("dbmsnet_r18_os16").kind == "preset"
    module = resolve_model(nn.Conv2d(3, 2, 1))
    assert (module.kind, module.name, module.file, module.path) == ("module", "conv2d", None, None)
    assert resolve_model(str(tmp_path / "b.onnx")).path is None  # only bundles are validation's checkpoint
    with pytest.raises(EdgesegError, match=r"--model nope.onnx: checkpoint not found .* not a zoo preset"):
        resolve_model("nope.onnx")
    with pytest.raises(EdgesegError, match="model: expected a path, a preset name or a torch.nn.Module, got"):
        resolve_model(3)


def test_set_is_for_presets_only(tmp_path: Path) -> None:
    source = resolve_model(nn.Conv2d(3, 2, 1))
    with pytest.raises(EdgesegError,
                       match="--set: only a zoo preset takes config fields; --model Conv2d is a"):
        load_source(source, CardSpec(input_size=(8, 8)), overrides={"width": 0.5})


def test_preset_takes_num_classes_and_set() -> None:
    notes: list[str] = []
    loaded = load_source(resolve_model("dbmsnet_r18_os16"), CardSpec(num_classes=3, input_size=(32, 32)),
                         overrides={"width": 0.25}, note=notes.append)
    assert loaded.card.num_classes == 3 and loaded.card.overrides == {"width": 0.25}
    assert loaded.model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert any("random weights" in n and "benchmarking" in n for n in notes)
    with pytest.raises(EdgesegError, match="--layout nhwc: preset dbmsnet_r18_os16 .a zoo network. fixes it"):
        load_source(resolve_model("dbmsnet_r18_os16"), CardSpec(layout="nhwc"))


def test_module_needs_an_input_size() -> None:
    with pytest.raises(EdgesegError, match=r"model Conv2d: an nn.Module does not fix its input size: pass"):
        ModelFromModule(nn.Conv2d(3, 2, 1), CardSpec())()


def test_module_digest_follows_the_weights() -> None:
    a = nn.Conv2d(3, 2, 1)
    before = module_digest(a)
    assert module_digest(a) == before
    with torch.no_grad():
        a.weight += 1
    assert module_digest(a) != before


# --- torch.export programs ----------------------------------------------------------------------------
class _TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1, stride=2)
        self.aux = nn.Conv2d(3, 5, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.aux(x)


def test_program_fixes_input_size_layout_and_classes(tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(_TupleNet().eval(), (torch.zeros(1, 3, 24, 32),)), path)
    loaded = ModelFromProgram(path, CardSpec())()
    assert loaded.card.input_size == (24, 32) and loaded.card.num_classes == 5
    assert loaded.details["output"] == "logits, NCHW" and loaded.details["output_shape"] == [1, 5, 12, 16]
    assert loaded.model(torch.zeros(3, 3, 24, 32)).shape == (3, 5, 24, 32)  # chunked, upsampled
    aux = ModelFromProgram(path, CardSpec(), output_name="1")()
    assert aux.details["output"] == "output 1: logits, NCHW"
    with pytest.raises(EdgesegError,
                       match=r"--input 32x32: .*net.pt2 \(static input shape\) fixes it at 24x"):
        ModelFromProgram(path, CardSpec(input_size=(32, 32)))()
    with pytest.raises(EdgesegError,
                       match=r"--num-classes 4: .*net.pt2 output \(NCHW, 5 channel\(s\)\) fixes"):
        ModelFromProgram(path, CardSpec(num_classes=4))()
    with pytest.raises(EdgesegError, match=r"--batch 2: .*net.pt2 fixes the batch at 1"):
        ModelFromProgram(path, CardSpec(), batch=2)()


# --- FP32 ONNX -------------------------------------------------------------------------------------------
def test_onnx_nhwc_sigmoid_quarter_resolution_adapts_to_the_contract(tmp_path: Path) -> None:
    path = _onnx_segmenter(tmp_path / "bin.onnx", classes=1, stride=4, nhwc=True, last="Sigmoid", batch="n")
    loaded = GraphFromOnnx(path, CardSpec(input_size=(32, 32), channels="bgr"), batch=2)()
    card = loaded.card
    assert (card.num_classes, card.input_size, card.layout, card.channels) == (2, (32, 32), "nchw", "rgb")
    assert loaded.details == {"input_layout": "nhwc", "channels": "bgr", "output_shape": [1, 8, 8, 1],
                              "output": "sigmoid probabilities, NHWC, binary (1 channel)"}
    assert [i.name for i in loaded.graph.graph.input] == ["images"]
    assert [o.name for o in loaded.graph.graph.output] == ["logits"]
    rgb = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (logits,) = _run(loaded.graph, {"images": rgb})
    # The original graph on what it expects (NHWC BGR), then logit, upsample and two classes by hand.
    (p,) = _run(path, {"x": rgb[:, ::-1].transpose(0, 2, 3, 1).copy()})
    x = torch.logit(torch.from_numpy(p).permute(0, 3, 1, 2).clamp(1e-6, 1 - 1e-6))
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    expected = torch.cat([-0.5 * x, 0.5 * x], 1).numpy()
    assert logits.shape == (2, 2, 32, 32)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    assert np.array_equal(logits.argmax(1), (x[:, 0] > 0).numpy())  # class 1 where the logit is > 0


def test_onnx_softmax_output_is_chosen_by_name_and_gives_log_probabilities(tmp_path: Path) -> None:
    path = _onnx_segmenter(tmp_path / "soft.onnx", classes=4, last="Softmax", opset=13)
    loaded = GraphFromOnnx(path, CardSpec(), output_name="out")()
    assert loaded.card.num_classes == 4 and loaded.card.input_size == (32, 32)
    assert loaded.details["output"] == "output 'out': softmax probabilities, NCHW"
    images = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (logits,) = _run(loaded.graph, {"images": images})
    (probs,) = _run(path, {"x": images})
    np.testing.assert_allclose(np.exp(logits), probs, atol=1e-5)
    with pytest.raises(EdgesegError, match=r"--output-name probs: .*soft.onnx has outputs \['out'\]"):
        GraphFromOnnx(path, CardSpec(), output_name="probs")()


def test_onnx_contradictions_are_refused(tmp_path: Path) -> None:
    path = _onnx_segmenter(tmp_path / "net.onnx", classes=3, nhwc=True)
    with pytest.raises(EdgesegError,
                       match=r"--input 16x16: .*net.onnx \(static input shape\) fixes it at 32"):
        GraphFromOnnx(path, CardSpec(input_size=(16, 16)))()
    with pytest.raises(EdgesegError,
                       match=r"--layout nchw: .*net.onnx \(input shape \(1, 32, 32, 3\)\) fixes"):
        GraphFromOnnx(path, CardSpec(layout="nchw"))()
    with pytest.raises(EdgesegError, match=r"--num-classes 5: .*net.onnx output 'out' \(NHWC, 3 channel"):
        GraphFromOnnx(path, CardSpec(num_classes=5))()
    with pytest.raises(EdgesegError, match=r"--batch/--shapes: .*net.onnx fixes the batch at 1"):
        GraphFromOnnx(path, CardSpec(), batch=4)()
    dynamic = _onnx_segmenter(tmp_path / "dyn.onnx", classes=3, size="s")  # type: ignore[arg-type]
    with pytest.raises(EdgesegError, match=r"dyn.onnx: its input size is not static; pass --input HxW"):
        GraphFromOnnx(dynamic, CardSpec())()


# --- --from-onnx: the graph against its card ---------------------------------------------------------
def test_from_onnx_graph_is_checked_against_its_card(tmp_path: Path) -> None:
    loaded = GraphFromOnnx(_onnx_segmenter(tmp_path / "n.onnx", classes=3), CardSpec())()
    graph = onnx.shape_inference.infer_shapes(loaded.graph)
    card = ModelCard(preset="onnx:n", num_classes=3, input_size=(32, 32))
    notes = check_graph_against_card(graph, card, "g.onnx")
    assert any("preprocessing" in n for n in notes)
    wrong = ModelCard(preset="onnx:n", num_classes=4, input_size=(32, 32))
    with pytest.raises(EdgesegError, match=r"g.onnx: output 'logits' has shape \(1, 3, 32, 32\); its card "
                                           r"says \(N, 4, 32, 32\) logits"):
        check_graph_against_card(graph, wrong, "g.onnx")
    bgr = ModelCard(preset="onnx:n", num_classes=3, input_size=(32, 32), channels="bgr")
    with pytest.raises(EdgesegError, match=r"g.onnx \(its card\): channels 'bgr': edgeseg build --from-onnx "
                                           r"feeds RGB input only"):
        check_graph_against_card(graph, bgr, "g.onnx")


def test_onnx_dynamic_batch_follows_shapes(tmp_path: Path) -> None:
    path = _onnx_segmenter(tmp_path / "dyn.onnx", classes=3, stride=2, batch="n")
    loaded = GraphFromOnnx(path, CardSpec(), shapes=(1, 2, 4))()
    dims = loaded.graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    (logits,) = _run(loaded.graph, {"images": np.zeros((3, 3, 32, 32), np.float32)})
    assert logits.shape == (3, 3, 32, 32)
    static = GraphFromOnnx(path, CardSpec(), batch=2)()
    assert static.graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


class _SegmenterOutput(dict):
    """Like Hugging Face's SemanticSegmenterOutput: scores in ``.logits``, no pytree registration."""

    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]


def test_module_returning_a_model_output_object_with_sigmoid_probabilities() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3, stride=4, padding=1)

        def forward(self, x: torch.Tensor) -> _SegmenterOutput:
            return _SegmenterOutput(logits=torch.sigmoid(self.conv(x)), hidden=x)

    loaded = ModelFromModule(Net(), CardSpec(input_size=(32, 32)))()
    assert loaded.details["output"] == "sigmoid probabilities, NCHW, binary (1 channel)"
    assert loaded.card.num_classes == 2
    assert loaded.model(torch.zeros(2, 3, 32, 32)).shape == (2, 2, 32, 32)


def test_card_layout_and_channels_round_trip_and_default_for_old_cards() -> None:
    card = ModelCard(preset="onnx:x", num_classes=2, layout="nhwc", channels="bgr")
    again = ModelCard.from_dict(card.to_dict())
    assert (again.layout, again.channels) == ("nhwc", "bgr")
    old = {k: v for k, v in card.to_dict().items() if k not in ("layout", "channels")}
    assert (ModelCard.from_dict(old).layout, ModelCard.from_dict(old).channels) == ("nchw", "rgb")
    with pytest.raises(EdgesegError, match="card.json: field 'channels' must be rgb or bgr, got 'rgba'"):
        ModelCard.from_dict({**old, "channels": "rgba"}, source="card.json")
