"""PyTorch → ONNX with the I/O contract every later stage relies on.

The graph has one input ``images`` (float32, ``(N, 3, H, W)``, already normalised) and one output:
``logits`` (float32, ``(N, K, H, W)``) or, with ``output="argmax"``, ``labels`` (int32,
``(N, H, W)``). H×W are static (TensorRT picks its fastest kernels for fixed spatial sizes and the
models' pooling layouts depend on them); the batch is static unless a batch profile is given.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) is used because the legacy
TorchScript exporter cannot translate adaptive average pooling to sizes that do not divide the
feature map.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.stopping import shielded

__all__ = [
    "ExportConfig",
    "ExportResult",
    "export_onnx",
    "carry_metadata",
    "ensure_opset",
    "finish_graph",
    "load_onnx",
    "module_scopes",
    "op_histogram",
    "parse_batch_profile",
    "INPUT_NAME",
    "MIN_OPSET",
    "MAX_OPSET",
    "DEFAULT_OPSET",
]

INPUT_NAME = "images"
OUTPUT_NAMES = {"logits": "logits", "argmax": "labels"}
#: TensorRT 10's ONNX parser reads opsets 9-20; 17 is the first with every op our models use in
#: the form TensorRT expects (e.g. Resize-13+ attributes, ReduceMean with axes as attribute ≤ 17).
MIN_OPSET = 17
MAX_OPSET = 20
#: The dynamo exporter emits opset 18 natively (asking for 17 goes through a version converter).
DEFAULT_OPSET = 18
# A single protobuf cannot exceed 2 GiB; above that the weights go to an external data file.
_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ExportConfig:
    """How to export one model.

    Args:
        input_size: ``(H, W)`` of the static input.
        batch: static batch size, used when ``batch_profile`` is None. Defaults to 1.
        batch_profile: ``(min, opt, max)`` batch sizes: exports a dynamic batch dimension and is
            recorded for the TensorRT optimization profile. Defaults to None (static batch).
        opset: ONNX opset, ``MIN_OPSET``..``MAX_OPSET``. Defaults to ``DEFAULT_OPSET``.
        output: ``"logits"`` or ``"argmax"`` (ArgMax over classes + Cast to int32). Defaults to logits.
    """

    input_size: tuple[int, int]
    batch: int = 1
    batch_profile: tuple[int, int, int] | None = None
    opset: int = DEFAULT_OPSET
    output: str = "logits"

    def __post_init__(self) -> None:
        h, w = self.input_size
        if h < 8 or w < 8:
            raise EdgesegError(f"input size must be at least 8x8, got {h}x{w}")
        if self.batch < 1:
            raise EdgesegError(f"batch must be >= 1, got {self.batch}")
        if self.batch_profile is not None:
            lo, opt, hi = self.batch_profile
            if not 1 <= lo <= opt <= hi:
                raise EdgesegError(f"--shapes must satisfy 1 <= min <= opt <= max, got {lo},{opt},{hi}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise EdgesegError(f"opset must be in {MIN_OPSET}..{MAX_OPSET} (TensorRT 10 parses up to "
                               f"{MAX_OPSET}), got {self.opset}")
        if self.output not in OUTPUT_NAMES:
            raise EdgesegError(f"output must be one of {sorted(OUTPUT_NAMES)}, got {self.output!r}")

    @property
    def output_name(self) -> str:
        return OUTPUT_NAMES[self.output]

    @property
    def example_batch(self) -> int:
        """The batch size of the example input (the profile's ``opt`` when dynamic)."""
        return self.batch_profile[1] if self.batch_profile else self.batch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["batch_profile"] = list(self.batch_profile) if self.batch_profile else None
        return d


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Args:
        path: the ONNX file.
        opset: default-domain opset of the saved graph.
        num_nodes: node count.
        op_types: node count per op type.
        external_data: True when the weights went to ``<path>.data`` (model > 2 GiB).
        seconds: wall time of the export.
    """

    path: Path
    opset: int
    num_nodes: int
    op_types: dict[str, int] = field(default_factory=dict)
    external_data: bool = False
    seconds: float = 0.0


def parse_batch_profile(text: str | None) -> tuple[int, int, int] | None:
    """Parse ``--shapes min,opt,max`` (batch sizes), e.g. ``"1,4,8"``.

    Returns:
        ``(min, opt, max)`` or None for an empty value.
    """
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise EdgesegError(f"--shapes expects three batch sizes 'min,opt,max' (e.g. 1,4,8), got {text!r}")
    return values  # type: ignore[return-value]


def _wrap_for_export(model: Any, output: str) -> Any:
    """Return the module to trace: the model itself, or the model followed by the class map."""
    import torch
    from torch import nn

    if output == "logits":
        return model

    class ArgmaxHead(nn.Module):
        # A module (not a flag on the model) keeps the export behaviour explicit and leaves the
        # model's own forward untouched.
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # int32: TensorRT has no int64 tensors on most paths, and class ids fit easily.
            return self.inner(x).argmax(dim=1).to(torch.int32)

    return ArgmaxHead(model).eval()


def export_onnx(
    model: Any,
    path: str | os.PathLike[str],
    config: ExportConfig,
    *,
    metadata: dict[str, str] | None = None,
    translation_table: dict[Any, Any] | None = None,
) -> ExportResult:
    """Export ``model`` (eval mode) to ONNX, check it, infer shapes and write it atomically.

    Args:
        model: an ``nn.Module`` whose eval forward maps ``(N, 3, H, W)`` to ``(N, K, H, W)`` logits.
        path: destination ``.onnx`` file.
        config: shapes, opset and output kind.
        metadata: string key/values stored in the graph's ``metadata_props`` (the build stores the
            model card there so a lone ONNX file still knows its preprocessing).
        translation_table: the exporter's ``custom_translation_table`` for custom ops (the fused
            DDC op: :func:`edgeseg.ops.onnx_plugin.custom_translation_table`). Defaults to none.

    Returns:
        An :class:`ExportResult`.

    Raises:
        EdgesegError: the exporter or the ONNX checker rejects the model.
    """
    import torch

    path = Path(path)
    start = time.perf_counter()
    model = model.eval()
    module = _wrap_for_export(model, config.output)
    h, w = config.input_size
    example = torch.randn(config.example_batch, 3, h, w)
    dynamic_shapes = None
    if config.batch_profile is not None:
        lo, _, hi = config.batch_profile
        # torch.export specialises a dimension whose range is a single value; a min of 1 also
        # needs max >= 2 so that the exported graph keeps a symbolic batch.
        batch = torch.export.Dim("batch", min=lo, max=max(hi, 2))
        dynamic_shapes = ({0: batch},)
    try:
        # torch.export traces through CPython frame hooks: a Ctrl-C waits for the export's end.
        with _quiet_exporter(), shielded():
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[config.output_name],
                opset_version=config.opset,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
                custom_translation_table=translation_table,
            )
    except Exception as e:  # the exporter raises many types; all mean "this model cannot export"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"ONNX export of {type(model).__name__} failed: {first}") from e
    if program is None:  # only when exporting with dynamo=False, which edgeseg never does
        raise EdgesegError(f"ONNX export of {type(model).__name__} returned no program")
    return finish_graph(program.model_proto, path, config, metadata=metadata, start=start)


def finish_graph(proto: Any, path: str | os.PathLike[str], config: ExportConfig, *,
                 metadata: dict[str, str] | None = None, start: float | None = None) -> ExportResult:
    """The last steps of every export: opset, metadata, checker and shape inference, atomic write.

    Shared by :func:`export_onnx` and by builds that start from an FP32 ONNX graph
    (:mod:`edgeseg.sources`), so both write ``model.onnx`` the same way.

    Args:
        proto: an ``onnx.ModelProto`` with the I/O contract of this module.
        path: destination ``.onnx`` file.
        config: the export's shapes, opset and output kind (recorded in the metadata).
        metadata: extra ``metadata_props`` (the model card). Defaults to none.
        start: ``time.perf_counter()`` when the export began. Defaults to now.

    Raises:
        EdgesegError: the opset conversion or the ONNX checker fails.
    """
    path = Path(path)
    start = time.perf_counter() if start is None else start
    proto = ensure_opset(proto, config.opset)
    _set_metadata(proto, {"edgeseg.export": json.dumps(config.to_dict()), **(metadata or {})})
    proto = check_and_infer(proto, label=str(path))
    external = save_onnx(proto, path)
    hist = op_histogram(proto)
    return ExportResult(path=path, opset=_default_opset(proto), num_nodes=sum(hist.values()),
                        op_types=hist, external_data=external, seconds=time.perf_counter() - start)


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Silence the exporter's progress prints and warnings; real failures still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _default_opset(proto: Any) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise EdgesegError("ONNX model has no default-domain opset import")


def ensure_opset(proto: Any, opset: int) -> Any:
    """Convert to ``opset`` if the graph holds another default-domain version."""
    import onnx.version_converter

    if _default_opset(proto) == opset:
        return proto
    try:
        return onnx.version_converter.convert_version(proto, opset)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"cannot convert the graph from opset {_default_opset(proto)} to {opset}: "
                           f"{first}") from e


def _set_metadata(proto: Any, items: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in items.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value


def carry_metadata(source: Any, target: Any) -> None:
    """Replace ``target``'s ``metadata_props`` with ``source``'s.

    Rewriting tools (onnxsim, Model Optimizer) drop or replace the metadata; every graph of a build
    carries the export's (config and model card) instead, so any one of them deploys alone.
    """
    del target.metadata_props[:]
    _set_metadata(target, {p.key: p.value for p in source.metadata_props})


def check_and_infer(proto: Any, *, label: str) -> Any:
    """Run ``onnx.checker`` and strict shape inference; return the shape-annotated model.

    Args:
        proto: an ``onnx.ModelProto``.
        label: file name used in the error message.

    Raises:
        EdgesegError: the graph is invalid or shapes cannot be inferred.
    """
    import onnx

    try:
        onnx.checker.check_model(proto)
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0]
        raise EdgesegError(f"{label}: invalid ONNX graph ({first})") from None


def save_onnx(proto: Any, path: str | os.PathLike[str]) -> bool:
    """Write an ONNX model atomically; weights go to ``<name>.data`` only above 2 GiB.

    Returns:
        True when external data was used.
    """
    import onnx

    from edgeseg._io import atomic_write

    path = Path(path)
    weight_bytes = sum(len(t.raw_data) for t in proto.graph.initializer)
    if weight_bytes < _PROTOBUF_LIMIT - (64 << 20):
        with atomic_write(path) as f:
            f.write(proto.SerializeToString())
        return False
    # External data: write the weights first, then the graph that points at them, so a reader
    # never sees a graph whose data file is incomplete.
    data_name = path.name + ".data"
    onnx.external_data_helper.convert_model_to_external_data(
        proto, all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
    tmp_dir = path.parent / f".{path.name}.external"
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        onnx.save_model(proto, tmp_dir / path.name)
        os.replace(tmp_dir / data_name, path.parent / data_name)
        os.replace(tmp_dir / path.name, path)
    except OSError as e:
        raise EdgesegError(f"{path}: could not write it ({e.strerror or e}); any earlier version is left "
                           "as it was") from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return True


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """Load an ONNX model (with external data), raising one clear error for a non-model file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(os.fspath(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise EdgesegError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    if not proto.graph.node:
        raise EdgesegError(f"{path}: not an ONNX model (no graph nodes)")
    return proto


def module_scopes(proto: Any) -> dict[str, str]:
    """Node name → the PyTorch module it came from (``"mdm.blocks.S"``), from the exporter's metadata.

    The dynamo exporter records each node's module path in its ``pkg.torch.onnx.name_scopes``
    metadata; later rewrites (onnxsim, Model Optimizer) keep node names but drop that metadata, so
    reports about those graphs look names up in the raw export.
    """
    import ast

    scopes = {}
    for node in proto.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                # A Python list literal: ['', 'mdm', 'mdm.blocks.S', 'add_8'] (last: the op).
                path = [p for p in ast.literal_eval(prop.value)[:-1] if p]
                if path:
                    scopes[node.name] = path[-1]
    return scopes


def op_histogram(proto: Any) -> dict[str, int]:
    """Node count per op type (custom domains as ``domain::Op``), most frequent first."""
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                     for n in proto.graph.node)
    return dict(counts.most_common())
