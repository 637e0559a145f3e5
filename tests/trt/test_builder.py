"""Engine build entry points: profile shapes, and the behaviour where TensorRT is missing.

The build itself needs TensorRT and a GPU; ``test_build_int8_engine_end_to_end`` runs it where both
exist (marked ``tensorrt``) and is skipped elsewhere with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.trt import build_engine, load_engine, resolve_profile, tensorrt_available
from edgeseg.trt.builder import check_dla_profile, polygraphy_profile


def test_static_inputs_need_no_shapes() -> None:
    assert resolve_profile({"images": (1, 3, 64, 64)}) == {"images": ((1, 3, 64, 64),) * 3}


def test_dynamic_batch_profile() -> None:
    profile = resolve_profile({"images": (-1, 3, 64, 64)},
                              {"images": ((1, 3, 64, 64), (2, 3, 64, 64), (8, 3, 64, 64))})
    assert profile["images"][2] == (8, 3, 64, 64)
    # A single static shape for a dynamic input means min = opt = max.
    static = resolve_profile({"images": (-1, 3, 64, 64)}, {"images": (4, 3, 64, 64)})
    assert static["images"] == ((4, 3, 64, 64),) * 3


@pytest.mark.parametrize(
    ("inputs", "shapes", "match"),
    [
        ({"images": (-1, 3, 64, 64)}, None, "dynamic shape"),
        ({"images": (1, 3, 64, 64)}, {"image": (1, 3, 64, 64)}, "unknown inputs"),
        ({"images": (-1, 3, 64, 64)}, {"images": (1, 3, 32, 64)}, "does not fit"),
        ({"images": (-1, 3, 64, 64)}, {"images": (1, 64, 64)}, "does not fit"),
        ({"images": (-1, 3, 8, 8)}, {"images": ((4, 3, 8, 8), (2, 3, 8, 8), (8, 3, 8, 8))}, "min <= opt"),
        ({"images": (-1, 3, 64, 64)}, {"images": "1x3x64x64"}, "tuple of ints"),
    ],
)
def test_bad_profiles(inputs: dict, shapes: dict | None, match: str) -> None:
    with pytest.raises(EdgesegError, match=match):
        resolve_profile(inputs, shapes)


def test_dla_needs_a_static_profile() -> None:
    check_dla_profile(resolve_profile({"images": (-1, 3, 8, 8)}, {"images": (2, 3, 8, 8)}), 0)
    dynamic = resolve_profile({"images": (-1, 3, 8, 8)},
                              {"images": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))})
    with pytest.raises(EdgesegError, match="--shapes.*--dla-core") as err:
        check_dla_profile(dynamic, 1)
    assert "'images'" in str(err.value) and "\n" not in str(err.value)


def test_profile_as_polygraphy_profile() -> None:
    profile = resolve_profile({"images": (-1, 3, 8, 8), "scale": (1,)},
                              {"images": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))})
    converted = polygraphy_profile(profile)
    assert list(converted) == ["images", "scale"]
    assert tuple(tuple(s) for s in converted["images"]) == profile["images"]
    assert tuple(tuple(s) for s in converted["scale"]) == ((1,), (1,), (1,))


def test_missing_tensorrt_gives_one_line_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    ok, reason = tensorrt_available()
    assert not ok and "cannot be imported" in reason
    onnx = tmp_path / "model.int8.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(MissingDependencyError) as err:
        build_engine(onnx, tmp_path / "model.int8.engine", precision="int8")
    message = str(err.value)
    assert "'tensorrt'" in message and "pip install 'edgeseg[trt]'" in message and "\n" not in message
    assert not (tmp_path / "model.int8.engine").exists()
    with pytest.raises(MissingDependencyError, match=r"edgeseg\[trt\]"):
        load_engine(tmp_path / "model.int8.engine")


def test_type_stubs_alone_are_not_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # tensorrt-stubs installs a 'tensorrt' folder of .pyi files that imports as an empty namespace.
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("__version__: str\n")
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    ok, reason = tensorrt_available()
    assert not ok and "type stubs" in reason


def test_qdq_fixture_is_a_valid_int8_graph(qdq_onnx: Path) -> None:
    # The engine-build test below feeds this graph to TensorRT; check here, on the CPU, that it is
    # valid ONNX computing what it should (ORT with optimizations off runs the Q/DQ nodes as written).
    import numpy as np

    from edgeseg.runners import OnnxrtRunner

    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    with OnnxrtRunner(qdq_onnx, graph_optimization="disabled") as r:
        out = r.infer({"images": x})["logits"]
    assert out.shape == (1, 3, 16, 16) and np.isfinite(out).all()


@pytest.mark.tensorrt
def test_build_int8_engine_end_to_end(qdq_onnx: Path, tmp_path: Path) -> None:
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(reason)
    pytest.importorskip("cuda", reason="cuda-python is needed to build engines")
    import numpy as np

    from edgeseg.runners import OnnxrtRunner, TrtRunner

    engine = tmp_path / "model.int8.engine"
    meta = build_engine(qdq_onnx, engine, precision="int8", timing_cache=tmp_path / "timing.cache")
    assert meta["precision"] == "int8" and meta["precision_check"]["realized"]
    assert (tmp_path / "timing.cache").is_file() and (tmp_path / "model.int8.engine.json").is_file()
    assert load_engine(engine).engine.num_io_tensors == 2

    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    with TrtRunner(engine) as trt_runner, OnnxrtRunner(qdq_onnx, graph_optimization="disabled") as ort:
        got, want = trt_runner.infer({"images": x})["logits"], ort.infer({"images": x})["logits"]
        trt_runner.infer({"images": -x})  # must not overwrite `got`: Polygraphy reuses its buffers
    # Same int8 arithmetic on both sides; only accumulation order and output rounding differ.
    assert np.abs(got - want).max() < 0.05
