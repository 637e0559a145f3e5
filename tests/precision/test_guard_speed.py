"""The guard's shortcuts decide exactly as the full computation would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.errors import AccuracyGateError
from edgeseg.precision.guard import Evaluation, ReferenceEvaluator, run_accuracy_guard
from edgeseg.precision.int8 import quantize_int8

from .test_guard import _quadrant_images, outlier_build  # noqa: F401  (module fixture reused)


@pytest.fixture(scope="module")
def int8_everywhere(outlier_build: dict) -> dict:  # noqa: F811
    """The OutlierNet graph with every layer INT8: most of its pixels disagree with FP32."""
    folder = outlier_build["folder"]
    images = np.concatenate([outlier_build["images"], _quadrant_images(10)])
    from .test_guard import OutlierNet

    with torch.no_grad():
        reference = OutlierNet().eval()(torch.from_numpy(images)).argmax(1).numpy()
    path = quantize_int8(folder / "model.sim.onnx", folder / "all.int8.onnx",
                         calibration_cache=folder / "c.cache", sample=images[:1],
                         high_precision_dtype="fp32").path
    return {"path": path, "images": images, "reference": reference}


def test_evaluation_stops_once_the_gate_is_out_of_reach(int8_everywhere: dict) -> None:
    images, reference = int8_everywhere["images"], int8_everywhere["reference"]
    full = ReferenceEvaluator(images, reference, reference, num_classes=4).evaluate(int8_everywhere["path"])
    assert not full.stopped_early and full.images == len(images) and full.pixel_agreement < 90.0
    seen: list[int] = []
    short = ReferenceEvaluator(images, reference, reference, num_classes=4).evaluate(
        int8_everywhere["path"], progress=lambda done, total: seen.append(done), stop_below=99.5)
    # Same verdict as the full run, from fewer images; the record says it stopped.
    assert short.stopped_early and short.images < len(images) and seen[-1] == short.images
    assert short.pixel_agreement < 99.5 and short.to_dict()["stopped_early"] is True
    assert "stopped_early" not in full.to_dict()
    # A gate the graph meets never stops early: the figures are those of the full run.
    met = ReferenceEvaluator(images, reference, reference, num_classes=4).evaluate(
        int8_everywhere["path"], stop_below=full.pixel_agreement - 1.0)
    assert not met.stopped_early and met.pixel_agreement == pytest.approx(full.pixel_agreement)


def test_evaluation_runs_the_worst_images_first_after_a_full_run(int8_everywhere: dict) -> None:
    images, reference = int8_everywhere["images"], int8_everywhere["reference"]
    evaluator = ReferenceEvaluator(images, reference, reference, num_classes=4)
    first = evaluator.evaluate(int8_everywhere["path"])
    order = list(evaluator._order)
    assert sorted(order) == list(range(len(images)))
    # The reordered second run gives the same figures (sums over images do not depend on order).
    again = evaluator.evaluate(int8_everywhere["path"])
    assert again.to_dict() == first.to_dict()
    # ... and its stop comes no later than in the original order.
    fresh = ReferenceEvaluator(images, reference, reference, num_classes=4)
    assert (evaluator.evaluate(int8_everywhere["path"], stop_below=99.5).images
            <= fresh.evaluate(int8_everywhere["path"], stop_below=99.5).images)


def test_guard_records_its_time_and_early_stops() -> None:
    def evaluate(path: Path) -> Evaluation:
        k = int(path.stem[1:])
        return Evaluation(80.0, 80.0, 99.0 + 0.3 * k, 2 if k < 2 else 8, stopped_early=k < 2)

    result = run_accuracy_guard(budget=1.0, min_agreement=99.5, quantize=lambda ex: Path(f"q{len(ex)}.onnx"),
                                evaluate=evaluate, rank=lambda _: [("a", 2.0), ("b", 1.0)])
    report = result.to_dict()
    assert result.excluded == ["a", "b"] and [s.get("stopped_early", False) for s in report["steps"]] == [
        True, True, False]
    assert set(report["seconds"]) == {"quantize", "evaluate", "rank"}
    assert all(v >= 0 for v in report["seconds"].values())
    with pytest.raises(AccuracyGateError, match=r"needed ≥ 99\.9%; stopped early, out of reach\)"):
        run_accuracy_guard(budget=1.0, min_agreement=99.9, quantize=lambda ex: Path("q0.onnx"),
                           evaluate=evaluate, rank=lambda _: [("a", 2.0)])


def test_bypassed_pairs_are_removed_not_left_to_run(int8_everywhere: dict) -> None:
    from edgeseg.export import load_onnx
    from edgeseg.precision.guard import _bypass_qdq
    from edgeseg.precision.int8 import quantized_nodes

    model = load_onnx(int8_everywhere["path"])
    layers = quantized_nodes(model)

    def qdq_pairs(m: object) -> int:
        nodes = m.graph.node  # type: ignore[attr-defined]
        produced = {o: n for n in nodes for o in n.output}
        return sum(n.op_type == "DequantizeLinear" and n.input[0] in produced
                   and produced[n.input[0]].op_type == "QuantizeLinear" for n in nodes)

    assert qdq_pairs(model) >= len(layers) > 1
    assert qdq_pairs(_bypass_qdq(model, keep=None)) == 0
    only = _bypass_qdq(model, keep=layers[1])
    # Only the kept layer's pairs (its input, and its weights where they are Q/DQ too) remain.
    assert 1 <= qdq_pairs(only) <= 2 and quantized_nodes(only) == [layers[1]]
    assert {n.op_type for n in only.graph.node} - {"QuantizeLinear", "DequantizeLinear"} == {
        n.op_type for n in model.graph.node} - {"QuantizeLinear", "DequantizeLinear"}
