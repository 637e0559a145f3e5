"""The guard's shortcuts decide exactly as the full computation would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.errors import AccuracyGateError
from edgeseg.precision.guard import Evaluation, ReferenceEvaluator, run_accuracy_guard
from edgeseg.precision.int8 import quantize_int8, write_calibration_cache
from edgeseg.precision.ranges import collect_ranges
from edgeseg.precision.sensitivity import SensitivityRanking

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
    from edgeseg.precision.int8 import quantized_nodes
    from edgeseg.precision.sensitivity import bypass_qdq

    model = load_onnx(int8_everywhere["path"])
    layers = quantized_nodes(model)

    def qdq_pairs(m: object) -> int:
        nodes = m.graph.node  # type: ignore[attr-defined]
        produced = {o: n for n in nodes for o in n.output}
        return sum(n.op_type == "DequantizeLinear" and n.input[0] in produced
                   and produced[n.input[0]].op_type == "QuantizeLinear" for n in nodes)

    assert qdq_pairs(model) >= len(layers) > 1
    assert qdq_pairs(bypass_qdq(model)) == 0
    only = bypass_qdq(model, keep=[layers[1]])
    # Only the kept layer's pairs (its input, and its weights where they are Q/DQ too) remain.
    assert 1 <= qdq_pairs(only) <= 2 and quantized_nodes(only) == [layers[1]]
    assert {n.op_type for n in only.graph.node} - {"QuantizeLinear", "DequantizeLinear"} == {
        n.op_type for n in model.graph.node} - {"QuantizeLinear", "DequantizeLinear"}


def test_a_graph_identical_to_the_previous_step_is_not_evaluated_again(tmp_path: Path) -> None:
    # modelopt may ignore an exclusion (the graph comes out byte for byte the same): same verdict.
    evaluated: list[str] = []

    def quantize(excluded: list[str]) -> Path:
        path = tmp_path / "model.int8.onnx"
        path.write_text("graph with b excluded" if "b" in excluded else "graph")
        return path

    def evaluate(path: Path) -> Evaluation:
        evaluated.append(path.read_text())
        return Evaluation(80.0, 80.0, 99.6 if "b" in path.read_text() else 99.0, 8)

    result = run_accuracy_guard(budget=1.0, min_agreement=99.5, quantize=quantize, evaluate=evaluate,
                                rank=lambda _: [("a", 2.0), ("b", 1.0)])
    assert evaluated == ["graph", "graph with b excluded"]
    assert [s.get("same_graph_as") for s in result.steps] == [None, 0, None]
    assert result.steps[1]["pixel_agreement"] == 99.0 and result.excluded == ["a", "b"]


@pytest.fixture(scope="module")
def mobile_int8(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    """A MobileNet-style net (random weights, 32x32), every layer the placement chose in INT8."""
    from tiny_nets import MobileSegNet

    from edgeseg.export import ExportConfig, export_onnx, simplify_onnx

    folder = tmp_path_factory.mktemp("mobile")
    torch.manual_seed(0)
    export_onnx(MobileSegNet(width=0.5).eval(), folder / "model.onnx", ExportConfig(input_size=(32, 32)))
    simplify_onnx(folder / "model.onnx", folder / "model.sim.onnx")
    write_calibration_cache(folder / "c.cache", collect_ranges(folder / "model.sim.onnx", images[:4], "max"))
    sim, cache = folder / "model.sim.onnx", folder / "c.cache"
    return quantize_int8(sim, folder / "model.int8.onnx", calibration_cache=cache, sample=images[:1],
                         high_precision_dtype="fp32").path


def test_ranking_scores_groups_first_and_finds_the_same_top_layers(mobile_int8: Path,
                                                                   images: np.ndarray) -> None:
    every = SensitivityRanking(mobile_int8, images[:2], group_size=1)
    lazy = SensitivityRanking(mobile_int8, images[:2])
    assert len(lazy) == len(every) >= 30
    top = every.top(4)
    assert every.sessions == len(every) + 1  # each layer alone, and the reference
    # The same layers in the same order with the same scores, from fewer graph runs than layers.
    assert lazy.top(4) == top and lazy.sessions < len(lazy) and lazy.ranked == top
    with pytest.raises(ValueError, match="group_size must be >= 1, got 0"):
        SensitivityRanking(mobile_int8, images[:2], group_size=0)


def test_a_stopped_evaluation_puts_the_images_it_got_most_wrong_first(int8_everywhere: dict) -> None:
    from edgeseg.export import load_onnx
    from edgeseg.precision.sensitivity import _run_graph

    images, path = int8_everywhere["images"], int8_everywhere["path"]
    labels = _run_graph(load_onnx(path), images).argmax(1)
    # A reference that differs from the graph in a known, different number of rows per image.
    rows = np.random.default_rng(0).permutation(len(images)) + 1
    reference = labels.copy()
    for i, r in enumerate(rows):
        reference[i, :r] = (labels[i, :r] + 1) % 4
    wrong = rows * labels.shape[-1]
    evaluator = ReferenceEvaluator(images, reference, reference, num_classes=4)
    # The gate is out of reach once about half of all the wrong pixels have been seen.
    gate = 100.0 * (1 - wrong.sum() / 2 / reference.size)
    first = evaluator.evaluate(path, stop_below=gate)
    assert first.stopped_early and 3 <= first.images < len(images)
    assert list(wrong[:first.images]) != sorted(wrong[:first.images], reverse=True)  # not in order already
    # The images run come first, most wrong first; those not run keep their order behind them.
    order = list(evaluator._order)
    assert order[:first.images] == sorted(range(first.images), key=lambda i: -wrong[i])
    assert order[first.images:] == list(range(first.images, len(images)))
    again = evaluator.evaluate(path, stop_below=gate)
    assert again.stopped_early and again.images < first.images


@pytest.mark.parametrize("predicted_k", [1, 2, 4, 6, 9, None])
def test_a_predicted_start_finds_the_step_the_upward_walk_finds(tmp_path: Path,
                                                                predicted_k: int | None) -> None:
    # 40 layers (steps 1, 2, 3, 4, 6, 9, 14, ...); agreement rises with each layer excluded; 4 reach
    # the gate. Predictions are asked up to a quarter of the layers (steps up to 9).
    ranking = [(f"l{i}", 40.0 - i) for i in range(40)]
    quantized: list[int] = []

    def quantize(excluded: list[str]) -> Path:
        quantized.append(len(excluded))
        path = tmp_path / "model.int8.onnx"
        path.write_text(f"{len(excluded)} excluded")
        return path

    def evaluate(path: Path) -> Evaluation:
        k = int(path.read_text().split()[0])
        return Evaluation(80.0, 80.0, 99.0 + 0.15 * k, 8)

    def predict(excluded: list[str], first: Evaluation) -> bool:
        assert first.pixel_agreement == 99.0  # the fully quantized graph's evaluation
        return predicted_k is not None and len(excluded) >= predicted_k

    result = run_accuracy_guard(budget=1.0, min_agreement=99.5, quantize=quantize, evaluate=evaluate,
                                rank=lambda _: ranking, predict=predict)
    linear = run_accuracy_guard(budget=1.0, min_agreement=99.5, quantize=quantize, evaluate=evaluate,
                                rank=lambda _: ranking)
    assert result.excluded == linear.excluded == ["l0", "l1", "l2", "l3"]
    assert result.evaluation.pixel_agreement == pytest.approx(99.6)
    steps = [s["excluded"] for s in result.steps]
    assert steps[-1] == 4 and quantized[len(steps) - 1] == 4  # the graph written last is the one kept
    # From the step below the prediction: up while the steps fail, down while they hold.
    expected = {1: [0, 1, 2, 3, 4], 2: [0, 1, 2, 3, 4], 4: [0, 3, 4], 6: [0, 4, 3, 4], 9: [0, 6, 4, 3, 4],
                None: [0, 9, 6, 4, 3, 4]}
    assert steps == expected[predicted_k]
    assert "predict" in result.seconds and "predict" not in linear.seconds


def test_each_layer_reports_the_int8_macs_it_runs(mobile_int8: Path, images: np.ndarray) -> None:
    from edgeseg.export import load_onnx
    from edgeseg.precision.coverage import int8_coverage

    ranking = SensitivityRanking(mobile_int8, images[:2])
    nodes = {n.name: n.op_type for n in load_onnx(mobile_int8).graph.node}
    macs = {layer: ranking.macs(layer) for layer in ranking.layers}
    # The stem: a 3x3 conv, 3 -> 8 channels, stride 2, a 16x16 output at 32x32.
    assert macs[ranking.layers[0]] == 8 * 16 * 16 * 3 * 3 * 3
    assert all(macs[n] == 0 for n in macs if nodes[n] not in ("Conv", "ConvTranspose", "Gemm", "MatMul"))
    assert sum(macs.values()) == int8_coverage(mobile_int8).macs_int8 > 0


def test_wrong_pixels_of_a_bypass_proxy_stop_once_above_the_limit(int8_everywhere: dict) -> None:
    from edgeseg.export import load_onnx
    from edgeseg.precision.sensitivity import _run_graph

    images, reference, path = int8_everywhere["images"], int8_everywhere["reference"], int8_everywhere["path"]
    ranking = SensitivityRanking(path, images[:2])
    per_image = (_run_graph(load_onnx(path), images).argmax(1) != reference).reshape(len(images), -1).sum(1)
    assert per_image[0] > 0
    # Nothing excluded: the proxy is the quantized graph itself; with every layer excluded, FP32.
    assert ranking.wrong_pixels([], images, reference) == per_image.sum()
    assert ranking.wrong_pixels(ranking.layers, images, reference) == 0
    # Above the limit after the first image: the other images are not run.
    assert ranking.wrong_pixels([], images, reference, stop_above=0) == per_image[0]
