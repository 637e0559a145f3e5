"""Activation ranges (max / percentile / entropy) and the TensorRT calibration cache format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.precision.int8 import read_calibration_cache, write_calibration_cache
from edgeseg.precision.ranges import RangeCollector, activation_tensors, collect_ranges


def _feed(collector: RangeCollector, batches: list[np.ndarray]) -> float:
    for b in batches:
        collector.update("t", b)
    return collector.amax()["t"]


def test_methods_on_a_distribution_with_outliers() -> None:
    rng = np.random.default_rng(0)
    # Two batches so histogram methods must re-bin when the range grows.
    batches = [rng.normal(0, 1, 20000).astype(np.float32),
               np.concatenate([rng.normal(0, 1, 20000), [40.0, -35.0]]).astype(np.float32)]
    peak = _feed(RangeCollector("max"), batches)
    pct = _feed(RangeCollector("percentile", percentile=99.9), batches)
    ent = _feed(RangeCollector("entropy"), batches)
    assert peak == pytest.approx(40.0)
    assert 2.8 < pct < 4.0  # |N(0,1)| 99.9th percentile ≈ 3.29
    assert 2.0 < ent < 20.0  # clips the two outliers, keeps the bulk
    assert ent < peak and pct < peak


def test_dead_tensor_gets_a_positive_range() -> None:
    assert _feed(RangeCollector("max"), [np.zeros(10, np.float32)]) > 0


def test_unknown_method() -> None:
    with pytest.raises(EdgesegError, match="calibration method"):
        RangeCollector("kl")


def test_cache_round_trip(tmp_path: Path) -> None:
    amax = {"images": 2.5, "node/relu:0": 0.125, "x": 1e-3}
    write_calibration_cache(tmp_path / "c.cache", amax)
    lines = (tmp_path / "c.cache").read_text().splitlines()
    assert lines[0].startswith("TRT-") and lines[1].startswith("images: ")
    back = read_calibration_cache(tmp_path / "c.cache")
    assert back.keys() == amax.keys()
    assert all(back[k] == pytest.approx(v, rel=1e-6) for k, v in amax.items())


def test_collect_ranges_covers_every_activation(tiny_sim: Path, images: np.ndarray) -> None:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(tiny_sim))
    names = activation_tensors(model)
    assert "images" in names and "logits" in names
    amax = collect_ranges(tiny_sim, images[:3], "max")
    assert set(amax) == set(names)
    assert amax["images"] == pytest.approx(float(np.abs(images[:3]).max()), rel=1e-6)


def test_entropy_ignores_the_relu_zero_spike() -> None:
    # Half exact zeros (a ReLU output), a half-normal bulk and one far outlier.
    rng = np.random.default_rng(1)
    values = np.concatenate([np.zeros(20000), np.abs(rng.normal(0, 1, 20000)), [30.0]]).astype(np.float32)
    ent = _feed(RangeCollector("entropy"), [values])
    assert 2.5 < ent < 10.0  # clips the outlier but not the bulk (the spike would drive it to ~30/16)
