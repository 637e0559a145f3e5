"""The build folder (``engines/<name>/``): precisions, artifact names, ``build.json``, ``report.json``.

This is the one module that knows what a build folder holds; every other module asks it::

    card.json                   the model card (preprocessing, classes, palette)
    model.onnx                  raw export                       Precision.FP32
    model.sim.onnx              simplified export                Precision.FP32 (preferred)
    model.fp16.onnx             FP16 graph                       Precision.FP16
    model.int8.onnx             INT8 Q/DQ graph                  Precision.INT8
    model.<precision>.engine    TensorRT engine (+ ``.engine.json``, its metadata)
    calib_cache/<key>.cache     calibration ranges
    build.json                  BuildRecord: per stage, inputs/outputs with sha256, options, timing
    report.json                 Report: the validation of every deployed artifact

``build.json`` records the sha256 of every file a stage wrote, so a consumer can refuse an artifact
that changed after its build (:meth:`BuildArtifacts.verify`), and a rebuild can skip a stage whose
inputs, options and outputs still match (:meth:`BuildRecord.is_fresh`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg._io import read_json, sha256_file, write_json
from edgeseg.checkpoint import ModelCard, load_card
from edgeseg.errors import EdgesegError

__all__ = [
    "BUILD_FILE", "BUILD_FORMAT", "CARD_FILE", "RAW_ONNX", "REPORT_FILE", "REPORT_FORMAT", "SIM_ONNX",
    "BuildArtifacts", "BuildRecord", "Precision", "StageRecord", "engine_name", "folder_lock",
    "graph_precision", "onnx_name", "read_report", "write_report",
]

CARD_FILE = "card.json"
BUILD_FILE = "build.json"
REPORT_FILE = "report.json"
RAW_ONNX = "model.onnx"
SIM_ONNX = "model.sim.onnx"
BUILD_FORMAT = "edgeseg.build/1"
REPORT_FORMAT = "edgeseg.validation/1"


class Precision(str, enum.Enum):
    """A deployment precision. Members are ordered from most to least accurate."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Precision, what: str = "precision") -> Precision:
        """``value`` as a Precision; an unknown name is a one-line error naming ``what``."""
        try:
            return cls(value)
        except ValueError:
            raise EdgesegError(f"{what} must be one of {', '.join(p.value for p in cls)}, "
                               f"got {value!r}") from None

    @property
    def rank(self) -> int:
        """0 for the most accurate; sorts artifacts from fp32 down to int8."""
        return list(Precision).index(self)


def onnx_name(precision: Precision | str) -> str:
    """The graph a precision deploys: ``model.sim.onnx`` for fp32, else ``model.<precision>.onnx``."""
    p = Precision.parse(precision)
    return SIM_ONNX if p is Precision.FP32 else f"model.{p.value}.onnx"


def engine_name(precision: Precision | str) -> str:
    return f"model.{Precision.parse(precision).value}.engine"


# ONNX file names per precision, best first (the raw export stands in when simplify has not run).
_ONNX_FILES = {Precision.FP32: (SIM_ONNX, RAW_ONNX), Precision.FP16: ("model.fp16.onnx",),
               Precision.INT8: ("model.int8.onnx",)}


def graph_precision(model: Any) -> Precision:
    """The precision an ONNX graph really holds, read from its nodes, never from its file name.

    INT8 means at least one QuantizeLinear/DequantizeLinear node: a graph without any is not INT8,
    whatever it is called. FP16 means float16 initializers (weights).
    """
    import onnx

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return Precision.INT8
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return Precision.FP16
    return Precision.FP32


# --- one writer at a time ---------------------------------------------------------------------
LOCK_FILE = ".lock"
_held: dict[Path, int] = {}


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the build folder for this process while it writes records and artifacts.

    Two builds writing one folder (an int8 and an fp16 build, say) would each rewrite build.json
    from their own copy and lose the other's records, so the second one is refused at once with
    the PID holding the folder. The lock is an ``flock`` on ``<folder>/.lock``: the kernel drops it
    when the holder dies, so a killed build never leaves the folder locked. Re-entrant within a
    process (a build validates its own folder).

    Raises:
        EdgesegError: another process holds the folder.
    """
    key = Path(folder).resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise EdgesegError(f"{folder}: build folder in use by PID {holder}; wait for that edgeseg "
                               "process to finish, or build into another folder (--name)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- build.json ---------------------------------------------------------------------------------
def _hashes(folder: Path, paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    out = {}
    for role, path in paths.items():
        shown = os.path.relpath(path, folder) if path.is_relative_to(folder) else os.fspath(path)
        out[role] = {"path": shown, "sha256": sha256_file(path)}
    return out


def _plain(obj: Any) -> Any:
    """Options as JSON would give them back (tuples → lists, paths → strings), for comparison."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return obj.item()
    return obj


@dataclass
class StageRecord:
    """One stage's entry in ``build.json``.

    Args:
        status: ``"done"``, ``"skipped"`` (could not run here, see ``reason``) or ``"failed"``.
        inputs: role → ``{"path", "sha256"}`` of the files it read.
        outputs: role → ``{"path", "sha256"}`` of the files it wrote (paths relative to the build).
        options: the options that shaped its outputs.
        results: anything else worth recording (node counts, metrics, excluded layers).
        duration_s: wall time.
        peak_rss_mib: the process's peak resident memory when the stage ended.
        finished: ISO-8601 UTC time.
        reason: why a skipped or failed stage did not finish.
    """

    status: str
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    peak_rss_mib: float | None = None
    finished: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status}
        if self.reason:
            d["reason"] = self.reason
        d.update(inputs=self.inputs, options=self.options, outputs=self.outputs, results=self.results,
                 duration_s=round(self.duration_s, 3), peak_rss_mib=self.peak_rss_mib,
                 finished=self.finished)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageRecord:
        return cls(status=d.get("status", ""), inputs=d.get("inputs", {}), outputs=d.get("outputs", {}),
                   options=d.get("options", {}), results=d.get("results", {}),
                   duration_s=float(d.get("duration_s", 0.0)), peak_rss_mib=d.get("peak_rss_mib"),
                   finished=d.get("finished", ""), reason=d.get("reason", ""))


class BuildRecord:
    """The ``build.json`` of one build folder: its one reader and writer.

    Args:
        folder: the build folder (``engines/<name>``).

    Attributes:
        meta: build-wide entries (``name``, ``source``, ``options``).
        stages: stage name → its record.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / BUILD_FILE
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
               peak_rss_mib: float | None = None, status: str = "done", reason: str = "") -> StageRecord:
        """Record a finished (skipped, failed) stage and rewrite ``build.json`` atomically."""
        rec = StageRecord(
            status=status,
            inputs=_hashes(self.folder, inputs),
            outputs=_hashes(self.folder, outputs),
            options=_plain(options),
            results=_plain(results or {}),
            duration_s=duration_s,
            peak_rss_mib=peak_rss_mib,
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

    def recorded_sha256(self, path: Path) -> str | None:
        """The sha256 the last stage that wrote ``path`` recorded for it (None: no stage wrote it)."""
        shown = os.path.relpath(path, self.folder) if path.is_relative_to(self.folder) else os.fspath(path)
        found = None
        for rec in self.stages.values():
            for out in rec.outputs.values():
                if out["path"] == shown and rec.status == "done":
                    found = out["sha256"]
        return found

    def save(self) -> None:
        write_json(self.path, {"format": BUILD_FORMAT, **self.meta,
                               "stages": {k: v.to_dict() for k, v in self.stages.items()}})


# --- report.json --------------------------------------------------------------------------------
def read_report(folder: str | os.PathLike[str], name: str = REPORT_FILE) -> dict[str, Any] | None:
    """A build's validation report, or None when validation has not written one."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    report = read_json(path)
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise EdgesegError(f"{path}: not an edgeseg validation report (format {REPORT_FORMAT})")
    return report


def write_report(folder: str | os.PathLike[str], report: dict[str, Any], name: str = REPORT_FILE) -> Path:
    """Write ``report`` atomically, stamped with :data:`REPORT_FORMAT`."""
    path = Path(folder) / name
    write_json(path, {"format": REPORT_FORMAT, **{k: v for k, v in report.items() if k != "format"}})
    return path


# --- what a folder holds -------------------------------------------------------------------------
@dataclass
class BuildArtifacts:
    """The artifacts present in one build folder.

    Attributes:
        root: the folder.
        card: its model card.
        onnx: every ONNX file present, by file name (``"model.sim.onnx"`` → path).
        engines: TensorRT engines present, by precision.
        record: its ``build.json``.
    """

    root: Path
    card: ModelCard
    onnx: dict[str, Path] = field(default_factory=dict)
    engines: dict[Precision, Path] = field(default_factory=dict)
    record: BuildRecord | None = None

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> BuildArtifacts:
        """Scan a build folder.

        Raises:
            EdgesegError: not a folder, or no ``card.json`` (not a build folder).
        """
        root = Path(path)
        if not root.is_dir():
            raise EdgesegError(f"{root}: build directory not found")
        card_path = root / CARD_FILE
        if not card_path.is_file():
            raise EdgesegError(f"{root}: not a build directory (no {CARD_FILE}); run 'edgeseg build' first")
        card = load_card(card_path)
        onnx = {p.name: p for p in sorted(root.glob("model*.onnx"))}
        engines = {p: root / engine_name(p) for p in Precision if (root / engine_name(p)).is_file()}
        return cls(root=root, card=card, onnx=onnx, engines=engines, record=BuildRecord(root))

    @property
    def options(self) -> dict[str, Any]:
        """The build options recorded in ``build.json`` (empty before the first build)."""
        return dict(self.record.meta.get("options") or {}) if self.record else {}

    def onnx_for(self, precision: Precision | str) -> Path | None:
        """The ONNX graph that implements ``precision`` (None when the build has not made it)."""
        for name in _ONNX_FILES[Precision.parse(precision)]:
            if name in self.onnx:
                return self.onnx[name]
        return None

    def precision_of(self, path: Path) -> Precision:
        """Which precision a file of this folder deploys (by the naming contract, else its graph)."""
        for p in Precision:
            if self.engines.get(p) == path or self.onnx_for(p) == path:
                return p
        if path.suffix == ".onnx":
            import onnx

            return graph_precision(onnx.load(os.fspath(path), load_external_data=False))
        raise EdgesegError(f"{path}: not an artifact of {self.root} (expected model.<precision>.engine)")

    def precisions(self) -> list[Precision]:
        """Precisions with an ONNX graph or an engine, most accurate first."""
        return [p for p in Precision if p in self.engines or self.onnx_for(p) is not None]

    def default_precision(self) -> Precision:
        """The precision the build was asked for (``build.json``), else the lowest one present.

        Raises:
            EdgesegError: the folder holds neither an ONNX graph nor an engine.
        """
        available = self.precisions()
        if not available:
            raise EdgesegError(f"{self.root}: no model*.onnx or model.*.engine; the build has not run yet")
        wanted = self.options.get("precision")
        return Precision(wanted) if wanted in [p.value for p in available] else available[-1]

    def engine_metadata(self, precision: Precision | str) -> dict[str, Any] | None:
        """The ``.engine.json`` written beside the engine by the TensorRT build, if present."""
        engine = self.engines.get(Precision.parse(precision))
        meta = engine.with_name(engine.name + ".json") if engine else None
        return read_json(meta) if meta is not None and meta.is_file() else None

    def checkpoint(self) -> Path | None:
        """The PyTorch bundle the build started from, when ``build.json`` records one that exists."""
        for key in ("checkpoint", "model"):
            value = self.options.get(key)
            if isinstance(value, str) and value.endswith(".pt"):
                path = Path(value)
                for candidate in (path, self.root / path):
                    if candidate.is_file():
                        return candidate
        return None

    def verify(self, path: Path) -> Path:
        """``path`` if its content is what its build stage recorded; else a one-line error.

        A file no stage recorded (an old build, a hand-copied graph) is refused as well: nothing
        vouches for it. Deploying consumers (runtime, validate, bench, video, exports) call this.
        """
        expected = self.record.recorded_sha256(path) if self.record else None
        if expected is None:
            raise EdgesegError(f"{path}: not recorded in {self.root / BUILD_FILE}; rebuild it with "
                               "'edgeseg build' before deploying it")
        if sha256_file(path) != expected:
            raise EdgesegError(f"{path}: changed since it was built (sha256 differs from "
                               f"{self.root / BUILD_FILE}); rebuild it with 'edgeseg build'")
        return path
