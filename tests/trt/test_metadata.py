"""Engine metadata: reading the sidecar and explaining TensorRT-version / GPU mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg._io import write_json
from edgeseg.errors import EdgesegError
from edgeseg.trt import (
    METADATA_FORMAT,
    EngineMismatchError,
    RuntimeInfo,
    compatibility_problems,
    ensure_compatible,
    metadata_path,
    read_metadata,
)
from edgeseg.trt.metadata import recorded_dla_core

ORIN = RuntimeInfo(tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7")


def _meta(**overrides: object) -> dict:
    meta = {"format": METADATA_FORMAT, "precision": "int8", "tensorrt_version": "10.3.0.30",
            "gpu": {"name": "Orin", "compute_capability": "8.7"}}
    meta.update(overrides)
    return meta


def test_matching_engine_has_no_problems() -> None:
    assert compatibility_problems(_meta(), ORIN) == []
    # The fourth version field is a build number; it does not change the plan format.
    assert compatibility_problems(_meta(tensorrt_version="10.3.0.26"), ORIN) == []


def test_tensorrt_version_mismatch_is_explained(tmp_path: Path) -> None:
    meta = _meta(tensorrt_version="10.7.0.23")
    (problem,) = compatibility_problems(meta, ORIN)
    assert "TensorRT 10.7.0.23" in problem and "10.3.0.30" in problem
    with pytest.raises(EngineMismatchError) as err:
        ensure_compatible(meta, ORIN, tmp_path / "engines" / "demo" / "model.int8.engine")
    message = str(err.value)
    assert "model.int8.engine cannot run here" in message
    assert "edgeseg build --from-onnx" in message and str(tmp_path / "engines" / "demo") in message
    assert "\n" not in message


def test_gpu_mismatch_names_both_devices() -> None:
    desktop = RuntimeInfo("10.3.0.30", "NVIDIA GeForce RTX 4090", "8.9")
    (problem,) = compatibility_problems(_meta(), desktop)
    assert "compute capability 8.7 (Orin)" in problem and "RTX 4090" in problem and "8.9" in problem


def test_same_architecture_other_model_is_refused() -> None:
    a100_meta = _meta(gpu={"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"})
    a30 = RuntimeInfo("10.3.0.30", "NVIDIA A30", "8.0")
    (problem,) = compatibility_problems(a100_meta, a30)
    assert "A100" in problem and "A30" in problem


def test_every_mismatch_is_listed() -> None:
    other = RuntimeInfo("11.0.0.1", "NVIDIA H100 80GB HBM3", "9.0")
    assert len(compatibility_problems(_meta(), other)) == 2


def test_read_metadata(tmp_path: Path) -> None:
    engine = tmp_path / "model.fp16.engine"
    assert metadata_path(engine) == tmp_path / "model.fp16.engine.json"
    with pytest.raises(EdgesegError, match="metadata not found"):
        read_metadata(engine)
    write_json(metadata_path(engine), {"format": "something-else"})
    with pytest.raises(EdgesegError, match="not edgeseg engine metadata"):
        read_metadata(engine)
    write_json(metadata_path(engine), {"format": METADATA_FORMAT, "precision": "fp16"})
    with pytest.raises(EdgesegError, match="lacks"):
        read_metadata(engine)
    write_json(metadata_path(engine), _meta(precision="fp16"))
    assert read_metadata(engine)["precision"] == "fp16"


@pytest.mark.parametrize(
    ("device", "core"),
    [({"type": "dla", "dla_core": 1}, 1), ({"type": "gpu"}, None), (None, None),
     ({"type": "gpu", "dla_core": 0}, None)],
)
def test_recorded_dla_core(device: dict | None, core: int | None) -> None:
    # load_engine sets the runtime's DLA core from this before deserialising.
    meta = _meta() if device is None else _meta(device=device)
    assert recorded_dla_core(meta) == core
