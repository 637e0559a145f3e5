"""Streaming calibration: the segmented graph gives exactly the ranges of exposing every activation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.export.onnx_export import INPUT_NAME
from edgeseg.precision.ranges import (
    RangeCollector,
    _plan_segments,
    activation_tensors,
    collect_ranges,
    iter_activations,
)
from edgeseg.runners.onnxrt import OnnxrtRunner


def _all_at_once(onnx_path: Path, images: np.ndarray, method: str) -> dict[str, float]:
    """The collector before streaming: every activation a graph output, one batch at a time."""
    model = onnx.shape_inference.infer_shapes(onnx.load(onnx_path))
    names = activation_tensors(model)
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in existing)
    collector = RangeCollector(method)
    with OnnxrtRunner(model.SerializeToString(), graph_optimization="disabled") as runner:
        for x in images:
            outputs = runner.infer({INPUT_NAME: x[None]})
            for name in names:
                collector.update(name, outputs[name])
    return collector.amax()


@pytest.mark.parametrize("method", ["max", "percentile", "entropy"])
def test_streaming_ranges_equal_all_at_once(tiny_sim: Path, images: np.ndarray, method: str) -> None:
    reference = _all_at_once(tiny_sim, images[:4], method)
    # A budget of one byte cuts the graph after every node that exposes an activation.
    streamed = collect_ranges(tiny_sim, images[:4], method, max_bytes=1)
    default = collect_ranges(tiny_sim, images[:4], method)
    assert streamed.keys() == reference.keys() == default.keys()
    if method == "max":
        assert streamed == reference == default  # bit for bit
    else:
        for name, value in reference.items():
            assert streamed[name] == pytest.approx(value, rel=1e-6), name
            assert default[name] == pytest.approx(value, rel=1e-6), name


def test_segments_bound_the_exposed_bytes(tiny_sim: Path) -> None:
    model = onnx.shape_inference.infer_shapes(onnx.load(tiny_sim))
    names = activation_tensors(model)
    whole = _plan_segments(model, names, 2**40)
    assert len(whole) == 1 and set(whole[0].exposed) == set(names) - {INPUT_NAME}
    # 16 KiB is two 16-channel 16x16 float maps of the tiny net: several segments, none over budget
    # unless a single node's outputs exceed it.
    split = _plan_segments(model, names, 16 * 2**10)
    assert len(split) > 2
    sizes = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output]}
    for segment in split:
        nbytes = [int(np.prod([d.dim_value for d in sizes[t].type.tensor_type.shape.dim])) * 4
                  for t in segment.exposed]
        assert sum(nbytes) <= 16 * 2**10 or len(nbytes) == 1
    assert [t for s in split for t in s.exposed] == whole[0].exposed  # graph order, each once
    # Every tensor a segment reads comes from the graph input or an earlier segment's carry.
    carried = {INPUT_NAME}
    for segment in split:
        assert set(segment.inputs) <= carried
        carried |= set(segment.carry)


def test_iter_activations_yields_each_tensor_once_per_image(tiny_sim: Path, images: np.ndarray) -> None:
    seen: dict[str, int] = {}
    done: list[int] = []
    for name, value in iter_activations(tiny_sim, images[:3], max_bytes=1,
                                        progress=lambda d, t: done.append(d)):
        assert value.shape[0] == 1
        seen[name] = seen.get(name, 0) + 1
    model = onnx.shape_inference.infer_shapes(onnx.load(tiny_sim))
    assert seen == {n: 3 for n in activation_tensors(model)}
    assert done == [1, 2, 3]


def test_iter_activations_rejects_a_non_positive_budget(tiny_sim: Path, images: np.ndarray) -> None:
    with pytest.raises(EdgesegError, match="max_bytes must be positive, got 0"):
        next(iter_activations(tiny_sim, images[:1], max_bytes=0))


@pytest.mark.parametrize("reference", ["images", "random"])
def test_fp16_reference_stats_equal_autocasts_own(tiny_sim: Path, images: np.ndarray, tmp_path: Path,
                                                  reference: str) -> None:
    from modelopt.onnx.autocast.referencerunner import ReferenceRunner, TensorStats

    from edgeseg.precision._modelopt import quiet_modelopt
    from edgeseg.precision.fp16 import _StreamingReferenceRunner

    model = onnx.load(tiny_sim)
    batches = images[:3] if reference == "images" else None
    inputs = None
    if batches is not None:  # AutoCast's own runner reads one .npz file per batch
        inputs = str(tmp_path)
        for i, x in enumerate(batches):
            np.savez(tmp_path / f"{i:05d}.npz", **{INPUT_NAME: x[None]})
    with quiet_modelopt():
        theirs = ReferenceRunner(model).run(inputs)
        ours = _StreamingReferenceRunner(model, batches).run()
    assert ours.keys() == theirs.keys()
    for name, stats in ours.items():
        expected = theirs[name]
        if not isinstance(expected, TensorStats):  # one batch: AutoCast keeps the raw array
            expected = TensorStats(np.max(np.abs(expected)), np.min(expected), np.max(expected),
                                   expected.shape)
        # AutoCast's session runs ONNX Runtime's fusions; ours runs the graph as it is: float rounding.
        assert (stats.absmax, stats.min_val, stats.max_val) == pytest.approx(
            (expected.absmax, expected.min_val, expected.max_val), rel=1e-5, abs=1e-6), name
        assert stats.shape == tuple(expected.shape), name
