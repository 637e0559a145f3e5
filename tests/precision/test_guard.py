"""Accuracy guard: a model made sensitive in one layer gets exactly that layer excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeseg.errors import AccuracyGateError, EdgesegError
from edgeseg.export import ExportConfig, export_onnx, load_onnx, simplify_onnx
from edgeseg.precision.guard import (
    Evaluation,
    ReferenceEvaluator,
    exclusion_schedule,
    run_accuracy_guard,
)
from edgeseg.precision.int8 import quantize_int8, write_calibration_cache
from edgeseg.precision.ranges import collect_ranges
from edgeseg.precision.sensitivity import SensitivityRanking


class OutlierNet(nn.Module):
    """Colour-channel classifier whose middle conv's input carries one channel of huge values.

    ``c1`` copies the three colour channels, adds twelve small features and one channel of
    ~5000 (a constant plus a scaled copy of red). ``c2`` ignores that channel, so FP32 is unaffected,
    but INT8 quantizes ``c2``'s input with one per-tensor scale set by it: every other channel rounds
    to 0 and the head sees nothing. Excluding ``c2`` (and only it) restores the output.
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.head = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 1), nn.Conv2d(16, 4, 1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for conv in (self.c1, self.c2, self.head):
                conv.weight.zero_()
                conv.bias.zero_()
            for i in range(3):
                self.c1.weight[i, i] = self.c2.weight[i, i] = self.head.weight[i, i] = 1.0
            self.c1.weight[3:15] = 0.05 * torch.rand(12, 3, 1, 1, generator=g)
            self.c2.weight[3:15, 3:15] = 0.05 * torch.rand(12, 12, 1, 1, generator=g)
            self.c1.weight[15, 0], self.c1.bias[15] = 1000.0, 5000.0
            self.head.bias[3] = 0.5  # "background" when no colour is strong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x)))))


def _quadrant_images(n: int, size: int = 32) -> np.ndarray:
    """Images whose quadrants are dominated by red, green, blue or nothing (margins >= 0.2)."""
    rng = np.random.default_rng(0)
    out = rng.uniform(0.0, 0.25, (n, 3, size, size)).astype(np.float32)
    h = size // 2
    for k in range(n):
        for q, (r, c) in enumerate([(0, 0), (0, h), (h, 0)]):
            out[k, (q + k) % 3, r:r + h, c:c + h] += 1.2
    return out


@pytest.fixture(scope="module")
def outlier_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("guard")
    net = OutlierNet().eval()
    export_onnx(net, folder / "model.onnx", ExportConfig(input_size=(32, 32)))
    simplify_onnx(folder / "model.onnx", folder / "model.sim.onnx")
    images = _quadrant_images(6)
    write_calibration_cache(folder / "c.cache", collect_ranges(folder / "model.sim.onnx", images[:4], "max"))
    with torch.no_grad():
        reference = net(torch.from_numpy(images)).argmax(1).numpy()
    conv_names = [n.name for n in load_onnx(folder / "model.sim.onnx").graph.node if n.op_type == "Conv"]
    return {"folder": folder, "images": images, "reference": reference, "convs": conv_names}


def test_guard_excludes_exactly_the_sensitive_layer(outlier_build: dict) -> None:
    folder, images, reference = outlier_build["folder"], outlier_build["images"], outlier_build["reference"]
    sim, cache, out = folder / "model.sim.onnx", folder / "c.cache", folder / "model.int8.onnx"
    c2 = outlier_build["convs"][1]
    # Labels = the FP32 model's own predictions, so the reference scores 100 mIoU.
    evaluator = ReferenceEvaluator(images, reference, reference, num_classes=4)

    def rank(path: Path) -> SensitivityRanking:
        return SensitivityRanking(path, images[:2])

    result = run_accuracy_guard(
        budget=1.0,
        quantize=lambda excluded: quantize_int8(sim, out, calibration_cache=cache, sample=images[:1],
                                                nodes_to_exclude=excluded, high_precision_dtype="fp32").path,
        evaluate=evaluator.evaluate,
        rank=rank,
    )
    assert result.steps[0]["excluded"] == 0 and result.steps[0]["miou_drop"] > 20  # INT8 everywhere breaks
    assert result.excluded == [c2] and result.ranking[0][0] == c2
    # Every layer scored alone: c2 stands far above the others.
    full = quantize_int8(sim, folder / "full.int8.onnx", calibration_cache=cache, sample=images[:1],
                         high_precision_dtype="fp32").path
    ranked = SensitivityRanking(full, images[:2], group_size=1).top(3)
    assert ranked[0][0] == c2 and ranked[0][1] > 5 * ranked[1][1]
    assert result.evaluation.drop <= 1.0 and result.evaluation.pixel_agreement > 99.0
    report = result.to_dict()
    assert report["excluded_layers"] == [c2] and len(report["steps"]) == 2


def test_exclusion_schedule() -> None:
    assert exclusion_schedule(1) == [1]
    assert exclusion_schedule(5) == [1, 2, 3, 4, 5]
    steps = exclusion_schedule(40)
    assert steps[:4] == [1, 2, 3, 4] and steps[-1] == 40 and steps == sorted(set(steps)) and len(steps) < 15


def test_guard_passes_without_ranking_when_within_budget() -> None:
    def rank(path: Path) -> list:
        raise AssertionError("ranking is only needed when the budget is exceeded")

    result = run_accuracy_guard(budget=1.0, quantize=lambda excluded: Path("m.onnx"),
                                evaluate=lambda path: Evaluation(79.5, 80.0, 99.8, 8), rank=rank)
    assert result.excluded == [] and result.evaluation.drop == pytest.approx(0.5)


def test_guard_fails_when_budget_cannot_be_met() -> None:
    with pytest.raises(AccuracyGateError,
                       match=r"even with all 3 INT8 layers excluded: mIoU drop 10\.00 \(allowed ≤ 0\.5\)"):
        run_accuracy_guard(budget=0.5, quantize=lambda excluded: Path("m.onnx"),
                           evaluate=lambda path: Evaluation(70.0, 80.0, 90.0, 8),
                           rank=lambda path: [("a", 3.0), ("b", 2.0), ("c", 1.0)])


def test_guard_also_holds_the_agreement_gate(tmp_path: Path) -> None:
    # A graph inside the mIoU budget but below the agreement gate still gets layers excluded.
    agreement_by_excluded = {0: 99.30, 1: 99.42, 2: 99.61}
    calls: list[list[str]] = []

    def quantize(excluded: list[str]) -> Path:
        calls.append(list(excluded))
        return tmp_path / f"q{len(excluded)}.onnx"

    def evaluate(path: Path) -> Evaluation:
        k = int(path.stem[1:])
        return Evaluation(miou=74.8, reference_miou=75.0, pixel_agreement=agreement_by_excluded[k], images=8)

    result = run_accuracy_guard(budget=1.0, min_agreement=99.5, quantize=quantize, evaluate=evaluate,
                                rank=lambda _: [("a", 3.0), ("b", 2.0), ("c", 1.0)])
    assert calls == [[], ["a"], ["a", "b"]]
    assert result.excluded == ["a", "b"] and result.to_dict()["min_pixel_agreement"] == 99.5
    # Budget alone (agreement gate 0) stops at the first graph.
    calls.clear()
    assert run_accuracy_guard(budget=1.0, quantize=quantize, evaluate=evaluate,
                              rank=lambda _: []).excluded == []
    with pytest.raises(EdgesegError, match="min-agreement"):
        run_accuracy_guard(budget=1.0, min_agreement=101, quantize=quantize, evaluate=evaluate, rank=list)
