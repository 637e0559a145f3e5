"""`edgeseg video` end to end on a generated clip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main

Decode = Callable[[Path], tuple[list[np.ndarray], Fraction | None]]


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """`edgeseg video` sets torch to one thread for its process; keep that out of other tests."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_video_command_writes_overlay(
    rt_build: Path, clip: Path, tmp_path: Path, decode_all: Decode, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "seg.mp4"
    main(
        [
            "video",
            str(clip),
            "--build",
            str(rt_build),
            "--out",
            str(out),
            "--overlay",
            "--batch",
            "4",
            "--backend",
            "onnxruntime",
            "--json",
        ]
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["frames_in"] == 24 == stats["frames_out"] + stats["skipped"]
    assert stats["segmenter"]["backend"] == "onnxruntime" and stats["batches"] == 6
    frames, rate = decode_all(out)
    assert len(frames) == 24 and frames[0].shape == (96, 128, 3) and rate == Fraction(25)


def test_video_command_every_and_mask_only(
    rt_build: Path, clip: Path, tmp_path: Path, decode_all: Decode, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.mkv"
    main(["video", str(clip), "--build", str(rt_build), "--out", str(out), "--every", "4", "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert stats["inferred"] == 6 and stats["frames_out"] == 24
    frames, _ = decode_all(out)
    assert len(frames) == 24
    # Without --overlay the output is the colour-coded class map: only palette colours (up to codec noise).
    palette = np.array([[0, 0, 0], [128, 64, 128], [0, 0, 142]], np.int16)
    dist = np.abs(frames[0][:, :, None, :].astype(np.int16) - palette[None, None]).sum(-1).min(-1)
    assert np.median(dist) < 12


def test_video_command_missing_input(
    rt_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["video", str(tmp_path / "none.mp4"), "--build", str(rt_build)])
    assert exit_info.value.code == 2 and "not found" in capsys.readouterr().err


def test_video_refuses_a_graph_edited_after_its_build(
    rt_build: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    build = Path(shutil.copytree(rt_build, tmp_path / "edited"))
    with open(build / "model.onnx", "ab") as f:
        f.write(b"\0")
    out = tmp_path / "seg.mp4"
    with pytest.raises(SystemExit) as info:
        main(["video", str(clip), "--build", str(build), "--out", str(out), "--backend", "onnxruntime"])
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "model.onnx: changed since it was built" in err[0]
    assert not out.exists()


def test_a_second_signal_while_draining_still_reports_the_frames_delivered(
    rt_build: Path, clip: Path, tmp_path: Path, decode_all: Decode, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--json` output and the playable file survive a second Ctrl-C (it abandons the frames in flight)."""
    from edgeseg.video import Pipeline

    original = Pipeline.run

    def second_signal(self: Pipeline, *args: object, **kwargs: object) -> object:
        original(self, *args, **kwargs)
        self.stats.interrupted = True  # as run() marks it once the first signal set its stop event
        raise KeyboardInterrupt  # the second signal, while the last frames drained

    monkeypatch.setattr(Pipeline, "run", second_signal)
    out = tmp_path / "seg.mp4"
    with pytest.raises(SystemExit) as stopped:
        main(["video", str(clip), "--build", str(rt_build), "--out", str(out), "--backend", "onnxruntime",
              "--json"])
    assert stopped.value.code == 130
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert stats["interrupted"] and stats["frames_out"] == 24
    assert captured.err.strip().splitlines()[-1] == (
        f"interrupted by SIGINT: {out} holds the 24 frames done so far (a complete, playable file)")
    assert len(decode_all(out)[0]) == 24
