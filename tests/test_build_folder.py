"""The build folder's one module: precision, names, build.json/report.json, artifact hashes."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edgeseg._io import sha256_file, write_json
from edgeseg.build_folder import (
    BUILD_FORMAT,
    REPORT_FORMAT,
    BuildArtifacts,
    BuildRecord,
    Precision,
    engine_name,
    graph_precision,
    onnx_name,
    read_report,
    write_report,
)
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError


def _graph(*, qdq: bool = False, fp16_weights: bool = False) -> onnx.ModelProto:
    dtype = TensorProto.FLOAT16 if fp16_weights else TensorProto.FLOAT
    w = helper.make_tensor("w", dtype, [1], [1.0])
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    inits = [w]
    if qdq:
        inits.append(helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]))
        nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    return helper.make_model(graph)


def test_precision_parse_and_order() -> None:
    assert Precision.parse("int8") is Precision.INT8 and Precision.INT8 == "int8"
    assert [p.rank for p in Precision] == [0, 1, 2]
    with pytest.raises(EdgesegError, match=r"--precision must be one of fp32, fp16, int8, got 'int4'"):
        Precision.parse("int4", "--precision")
    assert onnx_name("fp32") == "model.sim.onnx" and onnx_name(Precision.INT8) == "model.int8.onnx"
    assert engine_name("fp16") == "model.fp16.engine"


def test_graph_precision_reads_nodes_not_names() -> None:
    assert graph_precision(_graph(qdq=True)) is Precision.INT8
    assert graph_precision(_graph(fp16_weights=True)) is Precision.FP16
    # A graph with no Q/DQ node is never int8, whatever it is called.
    assert graph_precision(_graph()) is Precision.FP32


def test_record_round_trip_and_freshness(tmp_path: Path) -> None:
    art = tmp_path / "model.onnx"
    art.write_bytes(b"graph")
    record = BuildRecord(tmp_path)
    record.record("export", inputs={}, outputs={"onnx": art}, options={"opset": (18,)}, duration_s=1.5,
                  peak_rss_mib=123.4)
    again = BuildRecord(tmp_path)
    assert json.loads((tmp_path / "build.json").read_text())["format"] == BUILD_FORMAT
    rec = again.stages["export"]
    assert rec.status == "done" and rec.peak_rss_mib == 123.4
    assert rec.outputs["onnx"]["sha256"] == sha256_file(art)
    assert again.is_fresh("export", {}, {"opset": [18]})
    assert not again.is_fresh("export", {}, {"opset": [17]})
    art.write_bytes(b"edited")
    assert not again.is_fresh("export", {}, {"opset": [18]})


def test_foreign_build_json_is_refused(tmp_path: Path) -> None:
    write_json(tmp_path / "build.json", {"format": "someone.else/9"})
    with pytest.raises(EdgesegError, match="not an edgeseg build record"):
        BuildRecord(tmp_path)


def test_report_has_one_reader_and_writer(tmp_path: Path) -> None:
    assert read_report(tmp_path) is None
    write_report(tmp_path, {"passed": True, "candidates": []})
    assert read_report(tmp_path) == {"format": REPORT_FORMAT, "passed": True, "candidates": []}
    write_json(tmp_path / "report.json", {"passed": True})
    with pytest.raises(EdgesegError, match="not an edgeseg validation report"):
        read_report(tmp_path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_json(tmp_path / "card.json", ModelCard(preset="x", num_classes=3).to_dict())
    onnx.save(_graph(), tmp_path / "model.sim.onnx")
    onnx.save(_graph(qdq=True), tmp_path / "model.int8.onnx")
    record = BuildRecord(tmp_path)
    record.meta["options"] = {"precision": "int8"}
    record.record("simplify", inputs={}, outputs={"onnx": tmp_path / "model.sim.onnx"}, options={})
    record.record("quantize", inputs={}, outputs={"onnx": tmp_path / "model.int8.onnx"}, options={})
    return tmp_path


def test_artifacts_scan_and_verify(folder: Path) -> None:
    artifacts = BuildArtifacts.from_dir(folder)
    assert artifacts.precisions() == [Precision.FP32, Precision.INT8]
    assert artifacts.default_precision() is Precision.INT8
    int8 = artifacts.onnx_for("int8")
    assert int8 is not None and artifacts.precision_of(int8) is Precision.INT8
    assert artifacts.verify(int8) == int8
    # Edited after the build: refused, naming the file.
    int8.write_bytes(int8.read_bytes() + b"\0")
    with pytest.raises(EdgesegError, match=r"model\.int8\.onnx: changed since it was built"):
        artifacts.verify(int8)


def test_unrecorded_artifact_is_refused(folder: Path) -> None:
    stray = folder / "model.fp16.onnx"
    onnx.save(_graph(fp16_weights=True), stray)
    artifacts = BuildArtifacts.from_dir(folder)
    with pytest.raises(EdgesegError, match=r"model\.fp16\.onnx: not recorded in .*build\.json"):
        artifacts.verify(stray)


def test_not_a_build_folder(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="not a build directory"):
        BuildArtifacts.from_dir(tmp_path)


def test_a_folder_held_by_another_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    import subprocess
    import sys

    from edgeseg.build_folder import folder_lock
    from edgeseg.stages import Build, BuildOptions

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom edgeseg.build_folder import folder_lock\n"
         f"with folder_lock({str(tmp_path / 'demo_dbmsnet')!r}):\n"
         "    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(EdgesegError, match=rf"build folder in use by PID {holder.pid}\b"), \
                folder_lock(tmp_path / "demo_dbmsnet"):
            pass
        # A build into that folder is refused before it reads or writes anything there.
        with pytest.raises(EdgesegError, match=f"in use by PID {holder.pid}"):
            Build(BuildOptions(out_dir=tmp_path, precision="fp32")).run()
        assert not (tmp_path / "demo_dbmsnet" / "build.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: nothing stale is left to clear by hand.
    # ... and it is re-entrant within a process.
    with folder_lock(tmp_path / "demo_dbmsnet"), folder_lock(tmp_path / "demo_dbmsnet"):
        pass
