"""Fixtures shared across test packages.

Every test runs torch on one thread: ``make test`` runs two xdist workers on a 2-core machine, and
with more threads than cores OpenMP's workers wait on each other far longer than they compute (the
model tests measured ~30x slower per step under load).

Runtime fixtures (``rt_*``, used by tests/runtime, tests/video, tests/serve, tests/test_bench.py): a
tiny real segmentation network, its model card, and a build directory laid out per the build
contract (``card.json``, ``model.onnx``, ``model.fp16.onnx``, ``build.json``) made by actually
exporting the network with the dynamo ONNX exporter.

Fused-op fixtures (``tiny_ddc_net``, ``randomize_bn``, ``export_proto``, used by tests/ops and
tests/runners): a stem + three DDC blocks + classifier with non-trivial BatchNorm, and its ONNX
export in standard-op or plugin form (one ``EdgesegFusedDDC`` node per fused block).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg._io import write_json
from edgeseg.checkpoint import ModelCard
from edgeseg.models.dbmsnet import DDCBlock


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


RT_INPUT_SIZE = (32, 48)  # (H, W) of the tiny network's input
RT_CLASSES = 3


class TinyRuntimeNet(nn.Module):
    """Stride-2 conv, 1x1 classifier, bilinear upsampling to the input: segmentation in miniature."""

    def __init__(self, num_classes: int = RT_CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.cls = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cls(torch.relu(self.conv(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.fixture(scope="session")
def rt_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyRuntimeNet().eval()


@pytest.fixture(scope="session")
def rt_card() -> ModelCard:
    # Per-channel std differs on purpose: DeepStream's single scale factor cannot express it.
    return ModelCard(
        preset="tiny_runtime_net",
        num_classes=RT_CLASSES,
        class_names=["bg", "road", "car"],
        palette=[[0, 0, 0], [128, 64, 128], [0, 0, 142]],
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=RT_INPUT_SIZE,
    )


@pytest.fixture(scope="session")
def rt_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real zoo model as a deployable ``.pt`` bundle: DBMSNet-R18 at quarter width, 3 classes, 64x64."""
    from edgeseg.checkpoint import save_model
    from edgeseg.models import build_model

    torch.manual_seed(0)
    card = ModelCard(
        preset="dbmsnet_r18_os16",
        num_classes=3,
        overrides={"width": 0.25},
        class_names=["a", "b", "c"],
        input_size=(64, 64),
    )
    model = build_model(card.preset, num_classes=card.num_classes, **card.overrides).eval()
    path = tmp_path_factory.mktemp("bundle") / "tiny_dbmsnet.pt"
    save_model(path, model, card)
    return path


class ArgmaxNet(nn.Module):
    """Wraps a segmentation net so its graph ends in the class map (``--output argmax``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).argmax(1).to(torch.int32)


@pytest.fixture
def rt_static_build(rt_build: Path, rt_model: nn.Module, tmp_path: Path) -> Callable[..., Path]:
    """Factory: a build folder whose ``model.onnx`` has a static batch, logits or argmax output."""

    def make(batch: int, *, argmax: bool = False, name: str = "static") -> Path:
        build = tmp_path / name
        build.mkdir()
        shutil.copy(rt_build / "card.json", build / "card.json")
        h, w = RT_INPUT_SIZE
        torch.onnx.export(
            (ArgmaxNet(rt_model) if argmax else rt_model).eval(),
            (torch.zeros(batch, 3, h, w),),
            str(build / "model.onnx"),
            dynamo=True,
            input_names=["images"],
            output_names=["labels" if argmax else "logits"],
            external_data=False,
            verbose=False,
        )
        from edgeseg.build_folder import BuildRecord

        BuildRecord(build).record("export", inputs={}, outputs={"onnx": build / "model.onnx"}, options={})
        return build

    return make


@pytest.fixture(scope="session")
def rt_build(rt_model: nn.Module, rt_card: ModelCard, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``engines/<name>/``-style directory: card, raw ONNX (dynamic batch), FP16 graph, build.json."""
    import onnx
    from onnxconverter_common import float16

    root = tmp_path_factory.mktemp("build") / "tiny"
    root.mkdir()
    write_json(root / "card.json", rt_card.to_dict())
    h, w = RT_INPUT_SIZE
    batch = torch.export.Dim("N", min=1, max=8)
    torch.onnx.export(
        rt_model,
        (torch.zeros(2, 3, h, w),),
        str(root / "model.onnx"),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: batch}},
        external_data=False,
        verbose=False,
    )
    fp16 = float16.convert_float_to_float16(onnx.load(root / "model.onnx"), keep_io_types=True)
    # keep_io_types leaves this graph's output typed FP16; the build contract says float32 logits.
    (out,) = fp16.graph.output
    if out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        for node in fp16.graph.node:
            node.output[:] = ["logits_fp16" if o == "logits" else o for o in node.output]
        fp16.graph.node.append(
            onnx.helper.make_node("Cast", ["logits_fp16"], ["logits"], to=onnx.TensorProto.FLOAT)
        )
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.checker.check_model(fp16)
    onnx.save(fp16, root / "model.fp16.onnx")
    from edgeseg.build_folder import BuildRecord

    record = BuildRecord(root)  # build.json through its one writer, so the fixture follows its format
    record.meta["options"] = {"precision": "fp32"}
    # As the export and fp16 stages record them: consumers refuse graphs no stage recorded.
    record.record("export", inputs={}, outputs={"onnx": root / "model.onnx"}, options={})
    record.record("fp16", inputs={}, outputs={"onnx": root / "model.fp16.onnx"}, options={})
    return root


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so folding is exercised
    (a freshly initialised BN is the identity and would hide a wrong fold)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
    return model


class TinyDDCNet(nn.Module):
    """Stem conv, the MDM's three DDC blocks (S, M, L), 1x1 classifier: the fused path in miniature."""

    def __init__(self, channels: int = 40, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.Sequential(
            DDCBlock(channels, (1, 3, 5, 7)),
            DDCBlock(channels, (5, 7, 11, 13)),
            DDCBlock(channels, (13, 15, 17, 19)),
        )
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@pytest.fixture
def tiny_ddc_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(TinyDDCNet()).eval()


@pytest.fixture
def randomize_bn() -> Callable[..., nn.Module]:
    """:func:`randomize_batchnorm`, for tests that build their own model."""
    return randomize_batchnorm


def export_onnx_proto(model: nn.Module, x: torch.Tensor, *, plugin: bool) -> Any:
    """``model`` exported by the dynamo exporter (opset 18, ``images`` → ``logits``, static shapes) as an
    ``onnx.ModelProto``; ``plugin=True`` writes fused blocks as ``EdgesegFusedDDC`` nodes."""
    from edgeseg.ops.onnx_plugin import custom_translation_table

    table = custom_translation_table() if plugin else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            opset_version=18,
            custom_translation_table=table,
        )
    return program.model_proto


@pytest.fixture
def export_proto() -> Callable[..., Any]:
    """:func:`export_onnx_proto`: ``export_proto(model, x, plugin=...) -> onnx.ModelProto``."""
    return export_onnx_proto
