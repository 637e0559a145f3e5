"""SegmentationAdapter: every output shape real networks give becomes NCHW logits at input size."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models.adapter import (
    OutputSpec,
    SegmentationAdapter,
    output_activation,
    output_layout,
    select_output,
)


class _HFOutput(OrderedDict):
    """Stands in for Hugging Face's SemanticSegmenterOutput: a dict whose scores are ``.logits``."""

    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]


class _Net(nn.Module):
    """A conv at 1/``stride`` resolution, returning whatever ``wrap`` makes of its scores."""

    def __init__(self, classes: int, *, stride: int = 1, nhwc_in: bool = False, wrap=lambda y: y) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 3, stride=stride, padding=1)
        self.nhwc_in, self.wrap = nhwc_in, wrap

    def forward(self, x: torch.Tensor):
        if self.nhwc_in:
            x = x.permute(0, 3, 1, 2)
        return self.wrap(self.conv(x))


def test_select_output_picks_the_segmentation_scores() -> None:
    t = torch.zeros(1, 2, 4, 4)
    aux = torch.ones(1, 2, 4, 4)
    assert select_output(t, None) is t
    assert select_output({"out": t, "aux": aux}, None) is t  # torchvision's dict
    assert select_output({"aux": aux, "seg": t}, "seg") is t
    assert select_output(_HFOutput(logits=t), None) is t  # Hugging Face
    assert select_output((t, aux), None) is t  # a tuple with aux heads
    assert select_output((aux, t), 1) is t
    with pytest.raises(EdgesegError, match=r"dict with keys \['a', 'b'\]: choose one with --output-name"):
        select_output({"a": t, "b": aux}, None)
    with pytest.raises(EdgesegError, match=r"--output-name c: the model output has keys \['a', 'b'\]"):
        select_output({"a": t, "b": aux}, "c")
    with pytest.raises(EdgesegError, match=r"--output-name 5: the model output is a tuple of 2; give"):
        select_output((t, aux), 5)
    with pytest.raises(EdgesegError, match="--output-name x: the model output is a single tensor"):
        select_output(t, "x")


@pytest.mark.parametrize("shape,classes,expected", [
    ((1, 5, 32, 48), None, ("nchw", 5)),
    ((1, 32, 48, 5), None, ("nhwc", 5)),
    ((1, 5, 8, 12), 5, ("nchw", 5)),      # 1/4 resolution (SegFormer)
    ((1, 8, 12, 1), 2, ("nhwc", 1)),      # binary, NHWC, 1/4
    ((1, 1, 32, 48), None, ("nchw", 1)),
])
def test_output_layout_reads_the_shape(shape, classes, expected) -> None:
    assert output_layout(shape, (32, 48), classes, "nchw", "out") == expected


def test_output_layout_ties_follow_the_input_layout_and_misfits_are_refused() -> None:
    # (1, 8, 8, 8) on a 32x32 input reads either way: the input's layout decides.
    assert output_layout((1, 8, 8, 8), (32, 32), 8, "nhwc", "out") == ("nhwc", 8)
    assert output_layout((1, 8, 8, 8), (32, 32), 8, "nchw", "out") == ("nchw", 8)
    with pytest.raises(EdgesegError, match=r"out: shape \(1, 5, 32, 48\) is neither .* with 3 classes"):
        output_layout((1, 5, 32, 48), (32, 48), 3, "nchw", "out")
    with pytest.raises(EdgesegError, match=r"expected a 4-D segmentation output .* got shape \(1, 32, 48\)"):
        output_layout((1, 32, 48), (32, 48), None, "nchw", "out")


@pytest.mark.parametrize("wrap,expected", [
    (lambda y: y, "none"),
    (torch.sigmoid, "sigmoid"),
    (lambda y: F.interpolate(torch.sigmoid(y), scale_factor=2.0, mode="bilinear"), "sigmoid"),
    (lambda y: torch.softmax(y, 1).permute(0, 2, 3, 1), "softmax"),
    (lambda y: torch.log_softmax(y, 1), "none"),  # log-probabilities order like logits
    (lambda y: torch.sigmoid(y) * 2, "none"),  # computed after the sigmoid: not a probability any more
])
def test_output_activation_is_read_from_the_last_op(wrap, expected) -> None:
    net = _Net(2, wrap=wrap).eval()
    program = torch.export.export(net, (torch.zeros(1, 3, 8, 8),), strict=False)
    assert output_activation(program.graph, 0) == expected


def test_binary_sigmoid_becomes_two_class_logits_with_the_same_decision_and_probabilities() -> None:
    torch.manual_seed(0)
    net = _Net(1, stride=4, wrap=torch.sigmoid).eval()
    adapter = SegmentationAdapter(net, input_size=(32, 32),
                                  output=OutputSpec(activation="sigmoid", binary=True))
    x = torch.randn(2, 3, 32, 32)
    logits = adapter(x)
    assert logits.shape == (2, 2, 32, 32)
    p = F.interpolate(net.conv(x), size=(32, 32), mode="bilinear", align_corners=False).sigmoid()[:, 0]
    assert torch.equal(logits.argmax(1), (p > 0.5).long())
    torch.testing.assert_close(logits.softmax(1)[:, 1], p, atol=1e-5, rtol=1e-4)


def test_binary_logit_output_class_one_where_the_logit_is_positive() -> None:
    torch.manual_seed(1)
    net = _Net(1).eval()
    adapter = SegmentationAdapter(net, input_size=(16, 16), output=OutputSpec(binary=True))
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(adapter(x).argmax(1), (net(x)[:, 0] > 0).long())


def test_nhwc_bgr_softmax_network_at_quarter_resolution() -> None:
    torch.manual_seed(2)
    net = _Net(4, stride=4, nhwc_in=True, wrap=lambda y: torch.softmax(y, 1).permute(0, 2, 3, 1)).eval()
    adapter = SegmentationAdapter(net, input_size=(32, 32), layout="nhwc", channels="bgr",
                                  output=OutputSpec(layout="nhwc", activation="softmax"))
    rgb = torch.randn(1, 3, 32, 32)
    logits = adapter(rgb)
    assert logits.shape == (1, 4, 32, 32)
    # The network saw the BGR image in NHWC; its class map, upsampled before argmax, is the adapter's.
    scores = net.conv(rgb.flip(1))
    expected = F.interpolate(scores, size=(32, 32), mode="bilinear", align_corners=False).argmax(1)
    agreement = (logits.argmax(1) == expected).float().mean().item()
    assert agreement > 0.99  # log-softmax then resize vs resize of raw scores: ties may differ


def test_static_batch_model_runs_larger_batches_in_chunks() -> None:
    class OneOnly(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] != 2:
                raise RuntimeError("batch must be 2")
            return x[:, :2] * 3

    adapter = SegmentationAdapter(OneOnly(), input_size=(4, 4), static_batch=2)
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(adapter(x), x[:, :2] * 3)


def test_fixed_mode_model_is_left_alone_by_eval() -> None:
    program = torch.export.export(_Net(2).eval(), (torch.zeros(1, 3, 8, 8),))
    module = program.module()
    with pytest.raises(NotImplementedError):
        module.eval()  # why fixed_mode exists
    adapter = SegmentationAdapter(module, input_size=(8, 8), fixed_mode=True).train()
    assert adapter.training and adapter.eval() is adapter and not adapter.training
    assert adapter(torch.zeros(1, 3, 8, 8)).shape == (1, 2, 8, 8)
