"""`edgeseg export-triton` / `export-deepstream` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.cli import main


def test_export_commands(rt_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "export-triton",
            "--build",
            str(rt_build),
            "--repo",
            str(tmp_path / "repo"),
            "--name",
            "seg",
            "--max-batch",
            "4",
            "--preferred",
            "2,4",
        ]
    )
    config = (tmp_path / "repo" / "seg" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 4" in config
    assert "preferred_batch_size: [ 2, 4 ]" in config
    main(
        ["export-deepstream", "--build", str(rt_build), "--out", str(tmp_path / "ds"), "--precision", "fp16"]
    )
    assert (tmp_path / "ds" / "config_infer_tiny.txt").is_file()
    assert (tmp_path / "ds" / "tiny.deepstream.onnx").is_file()
    assert "nvinfer will build its own engine" in capsys.readouterr().err


def test_tensorrt_export_without_engine_exits_2(
    rt_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export-triton", "--build", str(rt_build), "--repo", str(tmp_path), "--backend", "tensorrt"])
    assert exit_info.value.code == 2 and "no model.fp32.engine" in capsys.readouterr().err
