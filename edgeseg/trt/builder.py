"""Build a TensorRT engine from a precision-typed ONNX graph, with Polygraphy's loaders.

One path serves TensorRT 10 (Jetson, JetPack 6) and TensorRT 11: ``NetworkFromOnnxPath`` parses the
graph as a *strongly typed* network, so FP16 comes from the graph's own tensor types and INT8 from its
Q/DQ nodes. ``CreateConfig`` gets no precision flag (TensorRT 11 removed ``BuilderFlag.FP16`` / ``INT8``
and the calibrators; on 10.x they would let TensorRT pick precisions the graph did not ask for), only
the profile, the workspace pool, the timing cache, detailed profiling verbosity (for the inspector) and
TF32, which is left on except for FP32 builds so that an "fp32" engine computes in FP32. Then
``EngineFromNetwork`` builds (saving the timing cache) and ``SaveEngine`` writes the plan.

What edgeseg adds (Polygraphy has no notion of them): the profile from ``--shapes`` with its checks,
the DLA core (Polygraphy's ``use_dla`` always picks core 0, sets ``PREFER_PRECISION_CONSTRAINTS`` on
10.x and only warns when the device has no DLA), plugin registration (:mod:`edgeseg.trt.plugins`), the
refusal of an engine whose requested precision was not realized (:mod:`edgeseg.trt.inspection`) and
the metadata sidecar (:mod:`edgeseg.trt.metadata`).

Unverified here: no machine this project tests on has TensorRT; this module is type-checked against
``tensorrt-stubs`` (10.13) and written against the documented Python API and Polygraphy 0.53.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg._io import atomic_write, sha256_file, write_json
from edgeseg.errors import EdgesegError
from edgeseg.trt._import import require_tensorrt
from edgeseg.trt.engine import new_runtime, run_polygraphy
from edgeseg.trt.inspection import PRECISIONS, check_precision_realized
from edgeseg.trt.metadata import METADATA_FORMAT, metadata_path
from edgeseg.trt.plugins import load_plugin_libraries, record_plugin_libraries

if TYPE_CHECKING:
    import tensorrt as trt
    from polygraphy.backend.trt import Profile

__all__ = ["build_engine", "resolve_profile", "check_dla_profile", "polygraphy_profile", "Shape", "ShapeSpec",
           "DEFAULT_WORKSPACE_GIB"]

Shape = tuple[int, ...]
#: A static shape, or ``(min, opt, max)`` shapes for one optimization profile.
ShapeSpec = Shape | tuple[Shape, Shape, Shape]

DEFAULT_WORKSPACE_GIB = 2.0


def resolve_profile(inputs: Mapping[str, Sequence[int]],
                    shapes: Mapping[str, Any] | None = None) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Optimization-profile shapes for every network input.

    Args:
        inputs: input name → shape as parsed from the ONNX graph (``-1`` for a dynamic dim).
        shapes: input name → a static shape or ``(min, opt, max)``. Inputs left out must be fully
            static in the graph. Defaults to none (all inputs static).

    Returns:
        input name → ``(min, opt, max)``.

    Raises:
        EdgesegError: unknown input names, rank mismatches, shapes that contradict a static dim,
            ``min <= opt <= max`` violated, or a dynamic input with no shape given.
    """
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise EdgesegError(f"shapes given for unknown inputs {unknown}; "
                           f"the network's inputs are {sorted(inputs)}")
    profile: dict[str, tuple[Shape, Shape, Shape]] = {}
    for name, graph_shape in inputs.items():
        graph_shape = tuple(int(d) for d in graph_shape)
        spec = shapes.get(name)
        if spec is None:
            if any(d < 0 for d in graph_shape):
                raise EdgesegError(f"input '{name}' has dynamic shape {graph_shape}; "
                                   "give its (min, opt, max) shapes")
            profile[name] = (graph_shape, graph_shape, graph_shape)
            continue
        triple = _as_triple(name, spec)
        for label, shape in zip(("min", "opt", "max"), triple, strict=True):
            fits = len(shape) == len(graph_shape) and all(
                g < 0 or s == g for s, g in zip(shape, graph_shape, strict=True))
            if not fits:
                raise EdgesegError(f"input '{name}': {label} shape {shape} does not fit "
                                   f"the graph's shape {graph_shape}")
        lo, opt, hi = triple
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)) or min(lo) < 1:
            raise EdgesegError(f"input '{name}': need 1 <= min <= opt <= max in every dim, got {triple}")
        profile[name] = triple
    return profile


def _dims(dims: trt.Dims) -> Shape:
    """``tensorrt.Dims`` → tuple (``-1`` marks a dynamic dim). Dims has ``len`` and indexing, no ``iter``."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _as_triple(name: str, spec: Any) -> tuple[Shape, Shape, Shape]:
    try:
        if spec and all(isinstance(d, int) for d in spec):
            static = tuple(spec)
            return static, static, static
        lo, opt, hi = (tuple(int(d) for d in s) for s in spec)
        return lo, opt, hi
    except (TypeError, ValueError):
        raise EdgesegError(f"input '{name}': shape must be a tuple of ints or (min, opt, max), "
                           f"got {spec!r}") from None


def check_dla_profile(profile: Mapping[str, tuple[Shape, Shape, Shape]], dla_core: int) -> None:
    """Refuse a dynamic profile for a DLA build: DLA needs ``min == opt == max`` for every input.

    Raises:
        EdgesegError: naming the first input whose profile is a range.
    """
    for name, (lo, opt, hi) in profile.items():
        if not lo == opt == hi:
            raise EdgesegError(f"input '{name}' has the profile min {lo} / opt {opt} / max {hi}, but DLA "
                               f"(core {dla_core}) needs min = opt = max: --shapes with a batch range "
                               "cannot be combined with --dla-core; build the DLA engine for one batch size")


def polygraphy_profile(profile: Mapping[str, tuple[Shape, Shape, Shape]]) -> Profile:
    """The one optimization profile as Polygraphy's ``Profile`` (what ``CreateConfig(profiles=)`` takes)."""
    from polygraphy.backend.trt import Profile

    out = Profile()
    for name, (lo, opt, hi) in profile.items():
        out.add(name, min=lo, opt=opt, max=hi)
    return out


def _use_dla(dla_core: int, builder: trt.Builder, network: trt.INetworkDefinition,
             config: trt.IBuilderConfig) -> None:
    """``PostprocessConfig`` step: run on DLA core ``dla_core``, layers it cannot run on the GPU."""
    import tensorrt as trt

    if not 0 <= dla_core < builder.num_DLA_cores:
        raise EdgesegError(f"DLA core {dla_core} requested but this device has "
                           f"{builder.num_DLA_cores} DLA core(s)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    # Layers DLA cannot run (e.g. Resize modes, ArgMax) fall back to the GPU instead of failing.
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _io_description(engine: trt.ICudaEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import tensorrt as trt

    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        entry = {"name": name, "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
                 "shape": list(_dims(engine.get_tensor_shape(name)))}
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(entry)
    return inputs, outputs


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    *,
    precision: str,
    shapes: Mapping[str, ShapeSpec] | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: str | os.PathLike[str] | None = None,
    dla_core: int | None = None,
    plugin_libs: Sequence[str | os.PathLike[str]] = (),
    check_precision: bool = True,
) -> dict[str, Any]:
    """Build ``engine_path`` (and its ``.json`` metadata) from a precision-typed ONNX graph.

    Builds for the current CUDA device (choose another with ``CUDA_VISIBLE_DEVICES``).

    Args:
        onnx_path: ``model.fp16.onnx`` / ``model.int8.onnx`` (Q/DQ) / ``model.sim.onnx`` for fp32.
        engine_path: where the engine goes, conventionally ``model.<precision>.engine``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: what the graph encodes, checked after the build.
        shapes: input name → static shape or ``(min, opt, max)``. Defaults to the graph's static shapes.
        workspace_gib: builder workspace limit in GiB. Defaults to 2.
        timing_cache: timing-cache file, loaded when present and merged and saved after the build (by
            Polygraphy), so rebuilds on the same GPU skip tactic timing. Defaults to no cache.
        dla_core: run on this DLA core with GPU fallback. Defaults to the GPU. DLA exists on Jetson
            AGX Orin with TensorRT 10.x (JetPack 6) or TensorRT 11.4.1+ (JetPack 7.2.2+); TensorRT
            11.0-11.3 have no DLA support. Needs a static profile (min = opt = max).
        plugin_libs: plugin libraries to load first (the ``EdgesegFusedDDC`` plugin); each is copied
            into the engine's folder and recorded, so the engine loads it from there later.
        check_precision: refuse an engine whose requested precision was not realized. Defaults to True.

    Returns:
        The metadata written beside the engine.

    Raises:
        MissingDependencyError: TensorRT (or cuda-python) is not installed; names the ``trt`` extra.
        EdgesegError: parse/build failure, bad shapes (or a dynamic profile with ``dla_core``), or the
            precision was not realized.
    """
    require_tensorrt("building TensorRT engines")
    import tensorrt as trt  # after the check: type stubs alone also import

    from edgeseg.trt._cuda import gpu_info

    if precision not in PRECISIONS:
        raise EdgesegError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise EdgesegError(f"{onnx_path}: ONNX file not found")
    # Imported here, not at the top: `edgeseg.trt` (tensorrt_available and friends) must import
    # on machines without Polygraphy, such as a bare GPU box running scripts/gpu_check.sh.
    from polygraphy.backend.trt import (
        CreateConfig,
        NetworkFromOnnxPath,
        PostprocessConfig,
        engine_from_network,
        save_engine,
    )

    gpu = gpu_info()
    started = time.perf_counter()

    plugins = load_plugin_libraries(plugin_libs)
    # 11.x parses every network strongly typed and keeps the creation flag only as an ignored name;
    # should a release drop it, asking Polygraphy for it would fail where no flag is needed.
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    builder, network, parser = run_polygraphy(
        f"{onnx_path}: TensorRT's ONNX parser failed",
        NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly_typed))
    graph_inputs = {tensor.name: _dims(tensor.shape)
                    for tensor in (network.get_input(i) for i in range(network.num_inputs))}
    profile = resolve_profile(graph_inputs, shapes)
    if dla_core is not None:
        check_dla_profile(profile, dla_core)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    tf32 = precision != "fp32"  # TensorRT's default is on; an FP32 engine gated at 99.99 % must not use it
    config = CreateConfig(
        profiles=[polygraphy_profile(profile)],
        tf32=tf32,
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(workspace_gib * (1 << 30))},
        # DETAILED makes the engine inspector report per-layer tensor types (the precision check).
        profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
        load_timing_cache=str(cache_path) if cache_path is not None and cache_path.is_file() else None,
    )
    if dla_core is not None:
        config = PostprocessConfig(config, functools.partial(_use_dla, dla_core))
    engine = run_polygraphy(
        f"{onnx_path}: TensorRT failed to build an engine",
        lambda: engine_from_network((builder, network, parser), config=config,
                                    save_timing_cache=str(cache_path) if cache_path is not None else None,
                                    runtime=new_runtime(dla_core)))
    layer_info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    realized = check_precision_realized(layer_info, precision)
    if check_precision and not realized:
        raise EdgesegError(f"{onnx_path}: {realized.message}; the engine was not written")
    inputs, outputs = _io_description(engine)

    # Written under a temporary name and renamed (atomic_write): a full disk or a kill never leaves
    # a truncated plan behind. Polygraphy's save_engine takes a file object.
    with atomic_write(engine_path) as f:
        save_engine(engine, f)
    meta = {
        "format": METADATA_FORMAT,
        "engine": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": sha256_file(onnx_path),
        "precision": precision,
        "precision_check": {"realized": realized.realized, "layer_input_types": realized.counts},
        "tensorrt_version": str(trt.__version__),
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "device": {"type": "dla", "dla_core": dla_core} if dla_core is not None else {"type": "gpu"},
        "inputs": [dict(i, profile={k: list(s) for k, s in zip(("min", "opt", "max"), profile[i["name"]],
                                                                     strict=True)}) for i in inputs],
        "outputs": outputs,
        "flags": {
            "strongly_typed": True,
            "workspace_gib": workspace_gib,
            "gpu_fallback": dla_core is not None,
            "tf32": tf32,
            "plugin_libs": record_plugin_libraries(plugins, engine_path.parent),
            "timing_cache": str(cache_path) if cache_path is not None else None,
        },
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(metadata_path(engine_path), meta)
    return meta
