"""Ctrl-C (SIGINT) and SIGTERM sent to real ``edgeseg`` processes once work has started.

Each test checks the exit status (130 / 143), the one last line saying what was kept, and what is
left on disk.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from edgeseg.train.checkpoint import load_checkpoint

from .conftest import Launched

Launch = Callable[..., Launched]
SIGNALS = [pytest.param(signal.SIGINT, 130, id="SIGINT"), pytest.param(signal.SIGTERM, 143, id="SIGTERM")]

# A quarter-width DBMSNet on 32x32 synthetic images: a few iterations per second on one thread.
TRAIN = ["train", "-m", "dbmsnet_r18_os16", "--set", "width=0.25", "--data", "synthetic",
         "--data-opt", "num_images=6", "--data-opt", "size=32", "--val-data", "none", "-b", "2",
         "--workers", "0", "--threads", "1", "--iters", "100000", "--checkpoint-every", "1",
         "--log-every", "1"]


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize("signum, status", SIGNALS)
def test_train_stops_with_the_signal_status_and_says_how_to_resume(
    launch: Launch, tmp_path: Path, signum: int, status: int
) -> None:
    out = tmp_path / "run"
    p = launch(*TRAIN, "--out", str(out))
    p.wait_until(lambda: (out / "last.pt").is_file())
    assert p.stop(signum) == status, p.stderr[-3000:]
    name = signal.Signals(signum).name
    iteration = load_checkpoint(out / "last.pt")["iteration"]
    assert _last_line(p.stderr) == (
        f"interrupted by {name}: {out / 'last.pt'} holds iteration {iteration}; "
        "to continue from there, add --resume to the same command"
    )
    assert "Traceback" not in p.stderr
    assert not list(out.glob("*.tmp")) and not (out / "model.pt").exists()  # no bundle of a half-run


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1500 frames (60 s at 25 fps) of 96x128: far more than a test waits for."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    yy, xx = np.mgrid[0:96, 0:128]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for i in range(1500):
            frame = np.stack([(xx * 2 + i * 9) % 256, (yy * 3 + i * 5) % 256, (xx + yy + i * 13) % 256], -1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("signum, status", SIGNALS)
def test_video_keeps_a_playable_file_of_the_frames_done(
    launch: Launch, tmp_path: Path, rt_build: Path, long_clip: Path, signum: int, status: int
) -> None:
    out = tmp_path / "seg.mp4"
    partial = tmp_path / ".seg.partial.mp4"
    p = launch("video", str(long_clip), "--build", str(rt_build), "--out", str(out), "--backend",
               "onnxruntime", "--json")
    # Past the container's header (tens of bytes, written before any frame): encoded frames are in.
    p.wait_until(lambda: partial.is_file() and partial.stat().st_size > 4096)
    assert p.stop(signum) == status, p.stderr[-3000:]
    name = signal.Signals(signum).name
    last = _last_line(p.stderr)
    assert last.startswith(f"interrupted by {name}: {out} holds the ") and "playable" in last, p.stderr
    assert not partial.exists()
    stats = json.loads(p.stdout)
    assert stats["interrupted"] and 0 < stats["frames_out"] < 1500
    with av.open(str(out)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == stats["frames_out"] == int(last.split(" holds the ")[1].split()[0])


@pytest.mark.parametrize("signum, status", SIGNALS)
def test_build_stops_with_the_signal_status_and_keeps_finished_stages(
    launch: Launch, tmp_path: Path, rt_bundle: Path, signum: int, status: int
) -> None:
    folder = tmp_path / "engines" / "tiny"
    p = launch("build", "-m", str(rt_bundle), "--precision", "fp16", "--name", "tiny", "--out-dir",
               str(tmp_path / "engines"))
    p.wait_until(lambda: " card " in p.stderr)  # the first stage is recorded: export is running
    assert p.stop(signum) == status, p.stderr[-3000:]
    name = signal.Signals(signum).name
    last = _last_line(p.stderr)
    assert last.startswith(f"interrupted by {name}: ") and last.endswith(
        "build.json keeps the stages finished so far; run the same command again to resume"), p.stderr
    assert "Traceback" not in p.stderr
    record = json.loads((folder / "build.json").read_text())
    assert record["stages"]["card"]["status"] == "done"
    # Export finishes and is recorded when the signal came during it (not yet begun otherwise).
    assert record["stages"].get("export", {}).get("status") in (None, "done"), record["stages"]
    assert not [f.name for f in folder.iterdir() if f.name.endswith((".tmp", ".partial"))]


def test_train_resumes_after_the_interruption(launch: Launch, tmp_path: Path) -> None:
    """What the last line advises works: the same command plus --resume continues from last.pt."""
    out = tmp_path / "run"
    p = launch(*TRAIN, "--out", str(out))
    p.wait_until(lambda: (out / "last.pt").is_file())
    assert p.stop(signal.SIGINT) == 130
    done = load_checkpoint(out / "last.pt")["iteration"]
    resumed = launch(*TRAIN, "--out", str(out), "--resume")
    resumed.wait_until(lambda: load_checkpoint(out / "last.pt")["iteration"] > done)
    assert resumed.stop(signal.SIGINT) == 130, resumed.stderr[-3000:]
    assert _last_line(resumed.stderr).endswith("to continue from there, run the same command again")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log if r["event"] == "resume"] == [done]
