"""The one comparator: feeding runners, segmentation agreement, output equality up to rounding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgeseg.compare import LABEL_MISMATCH, OUTPUT_RTOL, compare_outputs, infer, match_outputs, primary_output
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta


class ChannelSumRunner(BaseRunner):
    """Logits = (sum of channels, its negative) per pixel; records the batch sizes it was fed."""

    def __init__(self, batch: int | str, outputs: tuple[str, ...] = ("logits",)) -> None:
        super().__init__("sum")
        self.batch, self.outputs, self.fed = batch, outputs, []

    def activate_impl(self) -> None:
        pass

    def get_input_metadata_impl(self) -> list[TensorMeta]:
        return [TensorMeta("images", np.dtype(np.float32), (self.batch, 3, 2, 2))]

    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        x = feed["images"]
        self.fed.append(len(x))
        s = x.sum(1, keepdims=True)
        return {name: np.concatenate([s, -s], 1) for name in self.outputs}


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 2, 2)).astype(np.float32)


@pytest.mark.parametrize(("batch", "batch_size", "fed"),
                         [(4, 1, [4, 4]), ("N", 1, [1] * 5), ("N", 2, [2, 2, 1])])
def test_infer_chunks_pads_static_batches_and_keeps_every_image(batch: int | str, batch_size: int,
                                                               fed: list[int]) -> None:
    images = _images(5)
    done: list[tuple[int, int]] = []
    with ChannelSumRunner(batch) as runner:
        out = infer(runner, images, batch_size=batch_size, progress=lambda d, t: done.append((d, t)))
    assert runner.fed == fed and out.shape == (5, 2, 2, 2)
    np.testing.assert_allclose(out[:, 0], images.sum(1), rtol=1e-6)
    assert done[-1] == (5, 5)


def test_infer_refuses_empty_input_and_ambiguous_outputs() -> None:
    with ChannelSumRunner("N") as runner, pytest.raises(EdgesegError, match="sum: no images"):
        infer(runner, _images(0))
    ambiguous = r"sum: expected output 'logits' or 'labels', got \['a', 'b'\]"
    with ChannelSumRunner("N", ("a", "b")) as runner, pytest.raises(EdgesegError, match=ambiguous):
        infer(runner, _images(1))
    assert primary_output({"out": np.full(1, 7)}, "r")[0] == 7  # the only output, whatever its name
    assert primary_output({"labels": np.zeros(1), "x": np.ones(1)}, "r")[0] == 0


def test_compare_outputs_logits_labels_and_ground_truth() -> None:
    k = 3
    target = np.array([[[0, 1], [2, 255]]])
    ref = np.eye(k, dtype=np.float32)[[[[0, 1], [2, 0]]]].transpose(0, 3, 1, 2)  # one-hot logits
    cand = ref.copy()
    cand[0, :, 1, 0] = [0.0, 2.0, 1.0]  # pixel (1, 0) flips from class 2 to class 1
    m = compare_outputs(ref, cand, num_classes=k, targets=target)
    assert m.pixel_agreement == pytest.approx(75.0) and m.max_abs_error == pytest.approx(2.0)
    assert m.reference is not None and m.reference.miou == pytest.approx(100.0)
    assert m.miou_delta == pytest.approx(-50.0) and m.iou_delta == pytest.approx([0.0, -50.0, -100.0])
    labels = compare_outputs(ref.argmax(1), cand.argmax(1), num_classes=k)
    assert labels.pixel_agreement == pytest.approx(75.0) and math.isnan(labels.max_abs_error)
    assert labels.reference is None and math.isnan(labels.miou_delta)
    with pytest.raises(EdgesegError, match=r"logits must be \(N, 4, H, W\)"):
        compare_outputs(ref, cand, num_classes=4)


def test_match_outputs_scales_with_magnitude() -> None:
    a = np.array([[1000.0, -5.0]])
    assert match_outputs(a, a + 0.9 * OUTPUT_RTOL * 1000)  # within rtol of max |a| = 1000
    miss = match_outputs(a, a + 2 * OUTPUT_RTOL * 1000)
    assert not miss and miss.kind == "logits" and str(miss).startswith("max |diff| 0.2 >")
    small = np.array([0.001, 0.002])  # magnitude below 1: the bound is rtol itself
    assert not match_outputs(small, small + 2 * OUTPUT_RTOL)
    assert not match_outputs(small, np.array([0.001, np.nan]))  # NaN never matches


def test_match_outputs_label_maps_allow_rare_flips() -> None:
    a = np.zeros(10_000, np.int64)
    b = a.copy()
    b[: int(LABEL_MISMATCH * a.size)] = 1
    assert match_outputs(a, b)
    b[: int(LABEL_MISMATCH * a.size) + 1] = 1
    result = match_outputs(a, b)
    assert not result and result.kind == "labels" and "differing pixels" in str(result)
    with pytest.raises(EdgesegError, match="output shapes differ"):
        match_outputs(a, b[:-1])
