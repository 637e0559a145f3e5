"""export-triton: the written config.pbtxt, parsed back, matches the model's real I/O."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeseg._io import sha256_file, write_json
from edgeseg.errors import EdgesegError
from edgeseg.runners import OnnxrtRunner
from edgeseg.serve import export_triton

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))')


def parse_pbtxt(text: str) -> dict[str, Any]:
    """A small protobuf text-format reader: messages, repeated messages, scalar lists, scalars.

    Repeated fields come back as lists; a field that appears once with a scalar comes back as the
    scalar. Enum values and numbers come back as strings / ints.
    """
    tokens = [m.group(2) or m.group(3) or m.group(4) for m in _TOKEN.finditer(text) if not m.group(1)]
    tokens = [t for t in tokens if t]
    pos = 0

    def value(tok: str) -> Any:
        if tok.startswith('"'):
            return tok[1:-1]
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(end: str | None) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            if tokens[pos] == "{":
                pos += 1
                item: Any = message("}")
                pos += 1
            elif tokens[pos] == "[":
                pos += 1
                item = []
                while tokens[pos] != "]":
                    if tokens[pos] == ",":
                        pos += 1
                    elif tokens[pos] == "{":
                        pos += 1
                        item.append(message("}"))
                        pos += 1
                    else:
                        item.append(value(tokens[pos]))
                        pos += 1
                pos += 1
            else:
                item = value(tokens[pos])
                pos += 1
            out[key] = item
        return out

    return message(None)


def test_parser_reads_triton_doc_example() -> None:
    # The minimal configuration from Triton's model-configuration docs, as documented.
    doc = """
    name: "mymodel"
    platform: "tensorrt_plan"
    max_batch_size: 8
    input [
      { name: "input0" data_type: TYPE_FP32 dims: [ 16 ] },
      { name: "input1" data_type: TYPE_FP32 dims: [ 16 ] }
    ]
    output [ { name: "output0" data_type: TYPE_FP32 dims: [ 16 ] } ]
    """
    cfg = parse_pbtxt(doc)
    assert cfg["name"] == "mymodel" and cfg["max_batch_size"] == 8
    assert [i["name"] for i in cfg["input"]] == ["input0", "input1"] and cfg["output"][0]["dims"] == [16]


def test_onnxruntime_repository(rt_build: Path, tmp_path: Path) -> None:
    result = export_triton(rt_build, tmp_path / "repo", name="tiny_seg")
    model_dir = tmp_path / "repo" / "tiny_seg"
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert cfg["name"] == "tiny_seg" and cfg["platform"] == "onnxruntime_onnx" == result.platform
    assert cfg["max_batch_size"] == 8  # dynamic batch, no engine profile: the default
    # Triton owns the batch dim, so dims are the model's dims without it.
    with OnnxrtRunner(model_dir / "1" / "model.onnx") as runner:
        (inp,) = runner.get_input_metadata()
        (out,) = runner.get_output_metadata()
    assert cfg["input"] == [{"name": inp.name, "data_type": "TYPE_FP32", "dims": list(inp.shape[1:])}]
    assert cfg["output"] == [{"name": out.name, "data_type": "TYPE_FP32", "dims": list(out.shape[1:])}]
    assert cfg["input"][0]["dims"] == [3, 32, 48] and cfg["output"][0]["dims"] == [3, 32, 48]
    assert cfg["dynamic_batching"] == {"preferred_batch_size": [8], "max_queue_delay_microseconds": 100}
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]
    assert sha256_file(model_dir / "1" / "model.onnx") == sha256_file(rt_build / "model.onnx")
    assert (model_dir / "card.json").is_file()
    assert not (model_dir / "1" / "model.plan").exists()
    # A server running as another user must be able to read the repository (umask permitting).
    umask = os.umask(0o022)
    os.umask(umask)
    for path in (model_dir / "config.pbtxt", model_dir / "1" / "model.onnx"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_fp16_and_options(rt_build: Path, tmp_path: Path) -> None:
    export_triton(
        rt_build,
        tmp_path,
        precision="fp16",
        max_batch=4,
        preferred_batch=[2, 4],
        queue_delay_us=500,
        instances=2,
    )
    cfg = parse_pbtxt((tmp_path / "tiny" / "config.pbtxt").read_text())
    assert cfg["max_batch_size"] == 4
    assert cfg["dynamic_batching"] == {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 500}
    assert cfg["instance_group"][0]["count"] == 2
    assert sha256_file(tmp_path / "tiny" / "1" / "model.onnx") == sha256_file(rt_build / "model.fp16.onnx")


def test_tensorrt_without_engine_is_refused(rt_build: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="no model.fp32.engine"):
        export_triton(rt_build, tmp_path / "repo", backend="tensorrt")
    assert not list((tmp_path / "repo").rglob("model.plan")) if (tmp_path / "repo").exists() else True


def test_static_batch_labels_graph(rt_static_build: Callable[..., Path], tmp_path: Path) -> None:
    build = rt_static_build(1, argmax=True)
    result = export_triton(build, tmp_path / "repo")
    assert any("static batch" in note for note in result.notes)
    cfg = parse_pbtxt((tmp_path / "repo" / "static" / "config.pbtxt").read_text())
    # A static batch cannot be batched by Triton: max_batch_size 0 and full shapes, no batcher.
    assert cfg["max_batch_size"] == 0 and "dynamic_batching" not in cfg
    assert cfg["input"][0]["dims"] == [1, 3, 32, 48]
    assert cfg["output"] == [{"name": "labels", "data_type": "TYPE_INT32", "dims": [1, 32, 48]}]
    with pytest.raises(EdgesegError, match="static batch"):
        export_triton(build, tmp_path / "repo2", max_batch=4)


def test_engine_plan_copied_verbatim_with_profile_batch(rt_build: Path, tmp_path: Path) -> None:
    """The export copies a plan and reads its sidecar; it never parses the plan itself.

    The plan bytes below are a stand-in (no TensorRT here); what is under test is the copy and the
    batch settings taken from the sidecar's optimization profile, in the format edgeseg.trt writes.
    """
    build = tmp_path / "build"
    shutil.copytree(rt_build, build)
    (build / "model.fp32.engine").write_bytes(b"stand-in plan bytes")
    write_json(
        build / "model.fp32.engine.json",
        {
            "format": "edgeseg.engine/1",
            "precision": "fp32",
            "tensorrt_version": "10.3.0",
            "gpu": {},
            "inputs": [
                {
                    "name": "images",
                    "dtype": "float",
                    "shape": [-1, 3, 32, 48],
                    "profile": {"min": [1, 3, 32, 48], "opt": [2, 3, 32, 48], "max": [4, 3, 32, 48]},
                }
            ],
        },
    )
    from edgeseg.build_folder import BuildRecord

    # An engine nothing recorded is refused; recorded as the engine stage does, it is exported.
    with pytest.raises(EdgesegError, match=r"model\.fp32\.engine: not recorded in"):
        export_triton(build, tmp_path / "repo")
    BuildRecord(build).record("engine:fp32", inputs={}, options={},
                              outputs={"engine": build / "model.fp32.engine"})
    result = export_triton(build, tmp_path / "repo")
    cfg = parse_pbtxt(result.config_path.read_text())
    assert cfg["platform"] == "tensorrt_plan"
    assert cfg["max_batch_size"] == 4 and cfg["dynamic_batching"]["preferred_batch_size"] == [2]
    assert (result.model_dir / "1" / "model.plan").read_bytes() == b"stand-in plan bytes"
    with pytest.raises(EdgesegError, match="profile"):
        export_triton(build, tmp_path / "repo", max_batch=16)
    onnx_cfg = parse_pbtxt(
        export_triton(build, tmp_path / "r3", backend="onnxruntime").config_path.read_text()
    )
    assert onnx_cfg["platform"] == "onnxruntime_onnx"


def test_bad_name(rt_build: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="model name"):
        export_triton(rt_build, tmp_path, name="../escape")
