"""edgeseg._io: atomic writes survive a full disk, JSON is strict, reads fail in one line."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgeseg import _io
from edgeseg._io import atomic_write, read_json, save_torch, write_json
from edgeseg.errors import EdgesegError

ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


def _strict_loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, as strict parsers (browsers, jq, Go, Rust) do."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


class _DiskFills:
    """A file object that takes ``budget`` bytes, then fails like a full disk."""

    def __init__(self, f: Any, budget: int) -> None:
        self._f, self._left = f, budget

    def write(self, data: Any) -> int:
        if len(data) > self._left:
            raise OSError(errno.ENOSPC, ENOSPC)
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _DiskFills:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.fixture
def disk_fills(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file atomic_write opens fails with ENOSPC after 16 bytes."""
    real = os.fdopen
    monkeypatch.setattr(_io.os, "fdopen", lambda fd, mode: _DiskFills(real(fd, mode), 16))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_json_is_strict_non_finite_becomes_null(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    report = {
        "miou_delta": float("-inf"),
        "max_abs_logit_diff": np.float32("inf"),
        "per_class_iou_delta": {"road": float("nan"), "car": np.float64(-0.5)},
        "shape": (np.int64(2), 3),
        "values": np.array([1.0, np.nan]),
        "artifact": tmp_path / "model.onnx",
        "passed": np.bool_(True),
    }
    write_json(path, report)
    assert _strict_loads(path.read_text()) == {
        "miou_delta": None,
        "max_abs_logit_diff": None,
        "per_class_iou_delta": {"road": None, "car": -0.5},
        "shape": [2, 3],
        "values": [1.0, None],
        "artifact": os.fspath(tmp_path / "model.onnx"),
        "passed": True,
    }


def test_write_json_keeps_finite_floats_exact(tmp_path: Path) -> None:
    values = [0.1, 1e-300, -2.5e300, math.pi]
    write_json(tmp_path / "x.json", {"v": values})
    assert _strict_loads((tmp_path / "x.json").read_text())["v"] == values


@pytest.mark.parametrize("old", [None, b'{"old": true}\n'], ids=["new-file", "replaces-file"])
def test_full_disk_leaves_no_partial_file(tmp_path: Path, disk_fills: None, old: bytes | None) -> None:
    path = tmp_path / "build.json"
    if old is not None:
        path.write_bytes(old)
    with pytest.raises(EdgesegError, match=rf"^{path}: could not write it \({ENOSPC}\)"):
        write_json(path, {"stages": {str(i): "done" for i in range(100)}})
    assert _leftovers(tmp_path) == ([] if old is None else ["build.json"])
    if old is not None:
        assert path.read_bytes() == old


def test_full_disk_during_torch_save(tmp_path: Path, disk_fills: None) -> None:
    path = tmp_path / "last.pt"
    with pytest.raises(EdgesegError, match=rf"{path}: could not write it \({ENOSPC}\)"):
        save_torch(path, {"state_dict": {"w": torch.zeros(1000)}})
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_failing_sync_or_rename_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def fail(*args: Any) -> None:
        # os.replace's own OSError names both paths; fsync's names none.
        raise OSError(errno.ENOSPC, ENOSPC, *([os.fspath(a) for a in args] if fails == "replace" else []))

    monkeypatch.setattr(_io.os, fails, fail)
    expected = rf"{path}: could not write it \({ENOSPC}\)"
    with pytest.raises(EdgesegError, match=expected), atomic_write(path) as f:
        f.write(b"new bytes")
    assert _leftovers(tmp_path) == ["model.onnx"]
    assert path.read_bytes() == b"old"


def test_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "engines"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(EdgesegError, match=r"engines/demo/report.json: could not write it \(.+\)"):
        write_json(blocker / "demo" / "report.json", {})


def test_callers_own_errors_pass_through(tmp_path: Path) -> None:
    # An OSError about another file (the input being copied) is not a failure to write the output.
    path = tmp_path / "out.onnx"
    missing = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError, match="missing.onnx"), atomic_write(path) as f:
        f.write(missing.read_bytes())
    assert _leftovers(tmp_path) == []
    with pytest.raises(KeyError, match="boom"), atomic_write(path) as f:
        f.write(b"partial")
        raise KeyError("boom")
    assert _leftovers(tmp_path) == []


def test_atomic_write_success_gives_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "card.json"
    write_json(path, {"a": 1})
    assert _leftovers(path.parent) == ["card.json"]
    assert path.stat().st_mode & 0o444 == 0o444  # readable by a server running as another user


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\xff\xfe\x00binary", "not UTF-8"), (b'{"a": ', "not valid JSON"), (None, "cannot read it")],
    ids=["binary", "truncated", "a-folder"],
)
def test_read_json_errors_name_the_file(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "card.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(EdgesegError, match=rf"^{path}: .*{reason}"):
        read_json(path)


def test_a_stop_signal_during_a_torch_save_waits_for_the_save(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import torch

    from edgeseg._io import save_torch

    real_save = torch.save

    def interrupted_save(obj: object, f: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of the write
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", interrupted_save)
    target = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        save_torch(target, {"w": torch.ones(3)})
    # The interrupt came only after the file was complete and in place.
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
