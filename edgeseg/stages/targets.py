"""Target profiles: the device an engine is built for, and the build defaults that suit it.

A profile is a TOML file, ``edgeseg/assets/targets/<name>.toml`` (shipped ones) or any path::

    description = "Jetson Orin Nano (JetPack 6.1+)"
    tensorrt = "10.3"            # the TensorRT release line the target runs ("10" = any 10.x)
    compute_capability = "8.7"   # the target GPU's CUDA compute capability
    dla_cores = 0                # DLA cores on the target (optional, default 0)

    [build]                      # defaults for `edgeseg build`; every key optional
    precision = "int8"
    workspace = 1.0              # GiB
    opset = 18
    batch = 1                    # or shapes = [1, 4, 8] (dynamic batch min, opt, max)
    # dla_core = 0               # only where dla_cores > 0
    # input = [512, 1024]        # H, W; defaults to the model card's

``edgeseg build --target NAME|PATH`` fills the options the user did not give from ``[build]``
(:class:`edgeseg.stages.BuildOptions`), and where TensorRT runs the build refuses a machine whose
TensorRT line or compute capability differs from the profile's, since engines are not portable
(:func:`machine_problems`). Keys are checked strictly: a misspelt key is an error, not a silently
ignored default.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg.assets import TARGETS_DIR
from edgeseg.build_folder import Precision
from edgeseg.errors import EdgesegError
from edgeseg.export.onnx_export import MAX_OPSET, MIN_OPSET
from edgeseg.trt._import import MIN_TENSORRT_MAJOR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from edgeseg.trt.metadata import RuntimeInfo

__all__ = ["TARGETS_DIR", "BuildDefaults", "TargetProfile", "list_targets", "load_target", "machine_problems"]


_TOP_KEYS = {"description", "tensorrt", "compute_capability", "dla_cores", "build"}
_BUILD_KEYS = {"precision", "workspace", "dla_core", "opset", "batch", "shapes", "input"}


@dataclass(frozen=True)
class BuildDefaults:
    """The ``[build]`` table: defaults for the matching :class:`~edgeseg.stages.BuildOptions` fields.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8``.
        workspace: TensorRT workspace in GiB.
        dla_core: DLA core to build for.
        opset: ONNX opset of the export.
        batch: static batch size.
        shapes: ``(min, opt, max)`` dynamic batch sizes.
        input_size: ``(H, W)`` (TOML key ``input``).
    """

    precision: str | None = None
    workspace: float | None = None
    dla_core: int | None = None
    opset: int | None = None
    batch: int | None = None
    shapes: tuple[int, int, int] | None = None
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class TargetProfile:
    """A device an engine is built for.

    Args:
        name: the profile's file stem, e.g. ``jetson-orin-nano``.
        path: the TOML file.
        description: one line for people.
        tensorrt: TensorRT release line, ``"10.3"`` (10.3.x) or ``"10"`` (any 10.x).
        compute_capability: the GPU's compute capability, ``"major.minor"``.
        dla_cores: DLA cores on the target (0: none).
        build: defaults for ``edgeseg build``.
    """

    name: str
    path: Path
    description: str
    tensorrt: str
    compute_capability: str
    dla_cores: int = 0
    build: BuildDefaults = field(default_factory=BuildDefaults)

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt.split(".")[0])

    def check_dla_core(self, dla_core: int | None, what: str) -> None:
        """Raise unless ``dla_core`` is None or one of this target's DLA cores (``what`` names the source)."""
        if dla_core is None:
            return
        if self.dla_cores == 0:
            raise EdgesegError(f"{what} {dla_core}: target {self.name} ({self.path}) has no DLA cores")
        if not 0 <= dla_core < self.dla_cores:
            raise EdgesegError(f"{what} {dla_core}: target {self.name} ({self.path}) has DLA cores "
                               f"0..{self.dla_cores - 1}")


def list_targets() -> list[str]:
    """Names of the shipped profiles (``edgeseg/assets/targets/*.toml``), sorted."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def _profile_path(target: str | Path) -> Path:
    path = Path(target)
    if path.suffix == ".toml":
        if not path.is_file():
            raise EdgesegError(f"--target {target}: file not found")
        return path
    shipped = TARGETS_DIR / f"{target}.toml"
    if not shipped.is_file():
        raise EdgesegError(f"--target {target}: no such profile in {TARGETS_DIR} "
                           f"(profiles: {', '.join(list_targets()) or 'none'}; or pass a .toml path)")
    return shipped


def load_target(target: str | Path) -> TargetProfile:
    """Load and validate a profile by shipped name (``jetson-orin-nano``) or ``.toml`` path.

    Raises:
        EdgesegError: not found, not TOML, an unknown key, a missing key or a bad value; the message
            names the file and the key.
    """
    path = _profile_path(target)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{path}: not a valid TOML target profile ({e})") from e
    _check_keys(path, data, _TOP_KEYS, "")
    for key in ("description", "tensorrt", "compute_capability"):
        if key not in data:
            raise EdgesegError(f"{path}: missing key {key!r}")
    description = _typed(path, "description", data["description"], str)
    tensorrt = _typed(path, "tensorrt", data["tensorrt"], str)
    if not re.fullmatch(r"\d+(\.\d+)?", tensorrt) or int(tensorrt.split(".")[0]) < MIN_TENSORRT_MAJOR:
        raise EdgesegError(f"{path}: tensorrt must be a release line >= {MIN_TENSORRT_MAJOR} like "
                           f"\"10.3\" or \"10\", got {tensorrt!r}")
    cc = _typed(path, "compute_capability", data["compute_capability"], str)
    if not re.fullmatch(r"\d+\.\d+", cc):
        raise EdgesegError(f"{path}: compute_capability must be \"major.minor\" like \"8.7\", got {cc!r}")
    dla_cores = _typed(path, "dla_cores", data.get("dla_cores", 0), int)
    if dla_cores < 0:
        raise EdgesegError(f"{path}: dla_cores must be >= 0, got {dla_cores}")
    table = data.get("build", {})
    if not isinstance(table, dict):
        raise EdgesegError(f"{path}: 'build' must be a table ([build])")
    profile = TargetProfile(name=path.stem, path=path, description=description, tensorrt=tensorrt,
                            compute_capability=cc, dla_cores=dla_cores, build=_build_defaults(path, table))
    profile.check_dla_core(profile.build.dla_core, f"{path}: build.dla_core")
    return profile


def _build_defaults(path: Path, table: dict[str, Any]) -> BuildDefaults:
    _check_keys(path, table, _BUILD_KEYS, "build.")
    precision = _typed(path, "build.precision", table.get("precision"), str)
    if precision is not None and precision not in [p.value for p in Precision]:
        raise EdgesegError(f"{path}: build.precision must be one of {', '.join(p.value for p in Precision)}, "
                           f"got {precision!r}")
    workspace = _typed(path, "build.workspace", table.get("workspace"), float)
    if workspace is not None and workspace <= 0:
        raise EdgesegError(f"{path}: build.workspace must be > 0 GiB, got {workspace}")
    opset = _typed(path, "build.opset", table.get("opset"), int)
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        # MAX_OPSET is the newest opset TensorRT 10's ONNX parser reads (edgeseg.export).
        raise EdgesegError(f"{path}: build.opset must be {MIN_OPSET}..{MAX_OPSET} (TensorRT's ONNX "
                           f"parser), got {opset}")
    batch = _typed(path, "build.batch", table.get("batch"), int)
    if batch is not None and batch < 1:
        raise EdgesegError(f"{path}: build.batch must be >= 1, got {batch}")
    shapes = _int_list(path, "build.shapes", table.get("shapes"), 3)
    if shapes is not None and not 1 <= shapes[0] <= shapes[1] <= shapes[2]:
        raise EdgesegError(f"{path}: build.shapes must be [min, opt, max] with 1 <= min <= opt <= max, "
                           f"got {list(shapes)}")
    if batch is not None and shapes is not None:
        raise EdgesegError(f"{path}: give build.batch (static) or build.shapes (dynamic), not both")
    size = _int_list(path, "build.input", table.get("input"), 2)
    if size is not None and min(size) < 1:
        raise EdgesegError(f"{path}: build.input must be [H, W] of positive sizes, got {list(size)}")
    return BuildDefaults(precision=precision, workspace=workspace, opset=opset, batch=batch,
                         dla_core=_typed(path, "build.dla_core", table.get("dla_core"), int),
                         shapes=shapes, input_size=size)  # type: ignore[arg-type]


def _check_keys(path: Path, data: dict[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise EdgesegError(f"{path}: unknown key {prefix}{unknown[0]} "
                           f"(allowed: {', '.join(prefix + k for k in sorted(allowed))})")


def _typed(path: Path, key: str, value: Any, kind: type) -> Any:
    """``value`` when it is a ``kind`` (ints accepted for floats; bools are never numbers), or None."""
    if value is None:
        return None
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise EdgesegError(f"{path}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _int_list(path: Path, key: str, value: Any, length: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise EdgesegError(f"{path}: {key} must be a list of {length} integers, got {value!r}")
    return tuple(value)


def _line_matches(line: str, version: str) -> bool:
    """Whether TensorRT ``version`` (``"10.3.0.30"``) belongs to release ``line`` (``"10.3"``/``"10"``)."""
    wanted = line.split(".")
    return version.split(".")[:len(wanted)] == wanted


def machine_problems(profile: TargetProfile, runtime: RuntimeInfo) -> list[str]:
    """Why an engine built on ``runtime`` would not run on ``profile``'s device (empty when it would).

    Engines are tied to the TensorRT version and GPU compute capability they were built with, so a
    build for a target only makes sense on that target (or an identical machine).
    """
    problems = []
    if not _line_matches(profile.tensorrt, runtime.tensorrt_version):
        problems.append(f"this machine has TensorRT {runtime.tensorrt_version}, target {profile.name} runs "
                        f"TensorRT {profile.tensorrt}")
    if runtime.compute_capability != profile.compute_capability:
        problems.append(f"this GPU ({runtime.gpu_name}) has compute capability {runtime.compute_capability}, "
                        f"target {profile.name} has {profile.compute_capability}")
    return problems
