"""INT8: Q/DQ placed by modelopt with our cached scales; TensorRT-compatible; agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeseg.export import check_trt_compat
from edgeseg.precision.int8 import (
    quantize_int8,
    quantized_nodes,
    read_calibration_cache,
    write_calibration_cache,
)
from edgeseg.precision.ranges import collect_ranges
from edgeseg.runners.onnxrt import OnnxrtRunner


@pytest.fixture(scope="module")
def cache(tiny_sim: Path, images: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "ranges.cache"
    write_calibration_cache(path, collect_ranges(tiny_sim, images[:8], "max"))
    return path


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Scale of every activation QuantizeLinear, keyed by the tensor it quantizes."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n.input[0]: float(numpy_helper.to_array(inits[n.input[1]]))
            for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def test_int8_graph_uses_cached_scales_and_agrees(tiny_net: torch.nn.Module, tiny_sim: Path,
                                                  images: np.ndarray, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    result = quantize_int8(tiny_sim, out, calibration_cache=cache, sample=images[:1])
    model = onnx.load(out)
    assert result.num_qdq > 0 and len(result.quantized_nodes) >= 3
    assert max(o.version for o in model.opset_import if o.domain == "") == 19
    check_trt_compat(out)  # zero points 0, int8, weights through DQ of initializers
    assert {p.key: p.value for p in model.metadata_props} == {
        p.key: p.value for p in onnx.load(tiny_sim).metadata_props}  # the export's config travels along
    amax = read_calibration_cache(cache)
    scales = _activation_scales(model)
    # The graph input is cast to fp16 first; every other quantized tensor keeps its FP32 name.
    named = {k: v for k, v in scales.items() if k in amax}
    assert len(named) >= 2
    for tensor, scale in named.items():
        assert scale == pytest.approx(amax[tensor] / 127, rel=2e-3), tensor  # fp16-stored scale
    agree = []
    with OnnxrtRunner(out, graph_optimization="disabled") as runner:
        for x in images:
            logits = runner.infer({"images": x[None]})["logits"]
            with torch.no_grad():
                ref = tiny_net(torch.from_numpy(x[None])).numpy()
            agree.append((logits.argmax(1) == ref.argmax(1)).mean())
    assert np.mean(agree) > 0.97


def test_our_max_calibration_equals_modelopts(tiny_sim: Path, images: np.ndarray, cache: Path,
                                              tmp_path: Path) -> None:
    from modelopt.onnx.quantization import quantize

    from edgeseg.precision._modelopt import quiet_modelopt

    ours = tmp_path / "ours.onnx"
    quantize_int8(tiny_sim, ours, calibration_cache=cache, sample=images[:1], high_precision_dtype="fp32")
    native = tmp_path / "native.onnx"
    with quiet_modelopt():
        quantize(onnx_path=str(tiny_sim), calibration_data=images[:8], calibration_method="max",
                 calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=str(native),
                 log_level="ERROR")
    a, b = _activation_scales(onnx.load(ours)), _activation_scales(onnx.load(native))
    assert a.keys() == b.keys()
    assert all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a)


def test_excluded_layer_stays_float(tiny_sim: Path, images: np.ndarray, cache: Path, tmp_path: Path) -> None:
    full = quantize_int8(tiny_sim, tmp_path / "a.onnx", calibration_cache=cache, sample=images[:1],
                         high_precision_dtype="fp32")
    victim = full.quantized_nodes[0]
    part = quantize_int8(tiny_sim, tmp_path / "b.onnx", calibration_cache=cache, sample=images[:1],
                         nodes_to_exclude=[victim], high_precision_dtype="fp32")
    assert victim not in part.quantized_nodes
    assert set(part.quantized_nodes) == set(full.quantized_nodes) - {victim}
    assert quantized_nodes(onnx.load(tmp_path / "b.onnx")) == part.quantized_nodes
    model = onnx.load(tmp_path / "b.onnx")
    # fp32 high precision: no float16 anywhere.
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
