"""``build.json``: what each stage of a build consumed, produced and how long it took.

Every stage records its input files (with sha256), its options, its output files (with sha256),
extra results (node counts, excluded layers, ...), its duration and the time it finished. A stage
whose recorded inputs, options and outputs all still match is *fresh*: a rebuild skips it, so an
interrupted build resumes where it stopped and a changed option re-runs only the stages it affects.
The file is rewritten atomically after every stage.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._io import read_json, sha256_file, write_json
from edgeseg.errors import EdgesegError

__all__ = ["BuildRecord", "StageRecord", "BUILD_FORMAT"]

BUILD_FORMAT = "edgeseg.build/1"


def _hashes(folder: Path, paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    out = {}
    for role, path in paths.items():
        shown = os.path.relpath(path, folder) if path.is_relative_to(folder) else os.fspath(path)
        out[role] = {"path": shown, "sha256": sha256_file(path)}
    return out


@dataclass
class StageRecord:
    """One stage's entry in ``build.json``.

    Args:
        status: ``"done"`` or ``"skipped"`` (a step that could not run here, with ``reason``).
        inputs: role → ``{"path", "sha256"}`` of the files it read.
        outputs: role → ``{"path", "sha256"}`` of the files it wrote (paths relative to the build).
        options: the options that shaped its outputs.
        results: anything else worth recording (node counts, metrics, excluded layers).
        duration_s: wall time.
        finished: ISO-8601 UTC time.
        reason: why a skipped stage did not run.
    """

    status: str
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    finished: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        d.update(inputs=self.inputs, options=self.options, outputs=self.outputs, results=self.results,
                 duration_s=round(self.duration_s, 3), finished=self.finished)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageRecord:
        return cls(status=d.get("status", ""), inputs=d.get("inputs", {}), outputs=d.get("outputs", {}),
                   options=d.get("options", {}), results=d.get("results", {}),
                   duration_s=float(d.get("duration_s", 0.0)), finished=d.get("finished", ""),
                   reason=d.get("reason", ""))


class BuildRecord:
    """The ``build.json`` of one build folder.

    Args:
        folder: the build folder (``engines/<name>``).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "build.json"
        self.meta: dict[str, Any] = {}
        self.stages: dict[str, StageRecord] = {}
        if self.path.is_file():
            data = read_json(self.path)
            if not isinstance(data, dict) or data.get("format") != BUILD_FORMAT:
                raise EdgesegError(f"{self.path}: not an edgeseg build record (format {BUILD_FORMAT})")
            self.meta = {k: v for k, v in data.items() if k not in ("format", "stages")}
            self.stages = {k: StageRecord.from_dict(v) for k, v in data.get("stages", {}).items()}

    def is_fresh(self, stage: str, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        """True when ``stage`` ran with these exact inputs and options and its outputs are intact."""
        rec = self.stages.get(stage)
        if rec is None or rec.status != "done" or rec.options != _plain(options):
            return False
        try:
            if rec.inputs != _hashes(self.folder, inputs):
                return False
            return all(
                sha256_file(self.folder / out["path"]) == out["sha256"] for out in rec.outputs.values()
            )
        except FileNotFoundError:
            return False

    def record(self, stage: str, *, inputs: dict[str, Path], outputs: dict[str, Path],
               options: dict[str, Any], results: dict[str, Any] | None = None, duration_s: float = 0.0,
               status: str = "done", reason: str = "") -> StageRecord:
        """Record a finished (or skipped) stage and rewrite ``build.json`` atomically."""
        rec = StageRecord(
            status=status,
            inputs=_hashes(self.folder, inputs),
            outputs=_hashes(self.folder, outputs),
            options=_plain(options),
            results=_plain(results or {}),
            duration_s=duration_s,
            finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            reason=reason,
        )
        self.stages[stage] = rec
        self.save()
        return rec

    def forget(self, stage: str) -> None:
        """Drop a stage's record (its outputs are about to be rewritten)."""
        if self.stages.pop(stage, None) is not None:
            self.save()

    def save(self) -> None:
        write_json(self.path, {"format": BUILD_FORMAT, **self.meta,
                               "stages": {k: v.to_dict() for k, v in self.stages.items()}})


def _plain(obj: Any) -> Any:
    """Options as JSON would give them back (tuples → lists, paths → strings), for comparison."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return obj.item()
    return obj
