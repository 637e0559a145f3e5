"""Build a TensorRT engine from a precision-typed ONNX graph.

One path serves TensorRT 10 (Jetson, JetPack 6) and TensorRT 11: the network is parsed as
*strongly typed*, so FP16 comes from the graph's own tensor types and INT8 from its Q/DQ nodes. The
weak-typing builder flags (``BuilderFlag.FP16`` / ``INT8``) and INT8 calibrators are never used;
TensorRT 11 removed them, and on 10.x they would let TensorRT pick precisions the graph did not ask
for. (On 11.x every network is strongly typed; the creation flag is deprecated and ignored.) FP32
builds also clear ``BuilderFlag.TF32``, which TensorRT enables by default, so that an "fp32" engine
computes in FP32.

The steps, each a small function so a reader can follow the chain::

    load_plugin_libraries → network_from_onnx → resolve_profile → create_config
      → build_serialized_network → save timing cache → inspect (precision realized?) → write engine + metadata

Unverified here: no machine this project tests on has TensorRT; this module is type-checked against
``tensorrt-stubs`` (10.13) and written against the documented Python API.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeseg._io import atomic_write, sha256_bytes, sha256_file, write_json
from edgeseg.errors import EdgesegError
from edgeseg.trt._import import require_tensorrt
from edgeseg.trt.inspection import PRECISIONS, check_precision_realized
from edgeseg.trt.metadata import METADATA_FORMAT, metadata_path

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["build_engine", "resolve_profile", "check_dla_profile", "dims_to_tuple", "load_plugin_libraries",
           "plugin_library_key", "Shape", "ShapeSpec", "DEFAULT_WORKSPACE_GIB"]

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


def dims_to_tuple(dims: trt.Dims) -> Shape:
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


# Resolved path → library handle, for this process. ``IPluginRegistry.load_library`` fails (returns
# None) when any plugin of the library is already registered, so a second load of the same library
# (the build, then the runtime that checks the engine, then one TrtRunner per engine) would fail.
# Libraries are loaded once into the global registry, which the builder's and runtime's registries
# search as their parent (``parent_search_enabled`` defaults to True).
_loaded_plugin_libs: dict[str, Any] = {}
_plugin_lock = threading.Lock()


def plugin_library_key(path: str | os.PathLike[str]) -> str:
    """The resolved path under which a plugin library is loaded once per process.

    Raises:
        EdgesegError: the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgesegError(f"{p}: TensorRT plugin library not found")
    return str(p.resolve())


def load_plugin_libraries(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Load plugin shared libraries (e.g. the one holding ``EdgesegFusedDDC``) into TensorRT's global
    plugin registry, each at most once per process.

    Returns:
        The paths as given, for the engine metadata.
    """
    loaded = []
    for path in paths:
        key = plugin_library_key(path)
        with _plugin_lock:
            if key not in _loaded_plugin_libs:
                import tensorrt as trt

                handle = trt.get_plugin_registry().load_library(key)
                if handle is None:
                    raise EdgesegError(f"{path}: TensorRT could not load this plugin library (see the log "
                                       "above; it fails when one of its plugins is already registered)")
                _loaded_plugin_libs[key] = handle
        loaded.append(str(path))
    return loaded


def network_from_onnx(builder: trt.Builder, logger: trt.ILogger,
                      onnx_path: Path) -> tuple[trt.INetworkDefinition, trt.OnnxParser]:
    """Parse an ONNX file into a strongly typed network.

    Returns:
        ``(network, parser)``; keep the parser alive as long as the network, it owns the weights.
    """
    import tensorrt as trt

    # Required on 10.x; deprecated and ignored on 11.x, and a later release may drop the name.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
        raise EdgesegError(f"{onnx_path}: TensorRT's ONNX parser failed: "
                           + "; ".join(errors or ["no details"]))
    return network, parser


def create_config(builder: trt.Builder, profile: Mapping[str, tuple[Shape, Shape, Shape]], *,
                  precision: str, workspace_gib: float, timing_cache: bytes | None,
                  dla_core: int | None) -> tuple[trt.IBuilderConfig, bool]:
    """Builder config: workspace, detailed profiling (for the inspector), TF32 off for fp32, profile,
    timing cache, DLA.

    Returns:
        ``(config, timing_cache_reused)``.
    """
    import tensorrt as trt

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    # DETAILED makes the engine inspector report per-layer tensor types (the precision check).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if precision == "fp32":
        # TF32 is on by default and rounds the inputs of FP32 inner products to 10-bit mantissas; an
        # "fp32" engine, gated at 99.99 % agreement with PyTorch FP32, must not compute in it.
        config.clear_flag(trt.BuilderFlag.TF32)

    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        opt_profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    if config.add_optimization_profile(opt_profile) < 0:
        raise EdgesegError(f"TensorRT rejected the optimization profile {dict(profile)} as invalid "
                           "(see its log above)")

    # A corrupt or foreign cache file is not parsed (create_timing_cache gives None), and one from
    # another TensorRT version or GPU is rejected by set_timing_cache(ignore_mismatch=False) rather
    # than trusted; either way the build starts from an empty cache.
    cache = config.create_timing_cache(timing_cache) if timing_cache else None
    if timing_cache and cache is None:
        warnings.warn("the timing cache could not be read by TensorRT (corrupt, or not a timing cache); "
                      "building without it", RuntimeWarning, stacklevel=3)
    reused = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    if not reused:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    if dla_core is not None:
        if dla_core < 0 or dla_core >= builder.num_DLA_cores:
            raise EdgesegError(f"DLA core {dla_core} requested but this device has "
                               f"{builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        # Layers DLA cannot run (e.g. Resize modes, ArgMax) fall back to the GPU instead of failing.
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config, reused


def _io_description(engine: trt.ICudaEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import tensorrt as trt

    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        entry = {"name": name, "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower(),
                 "shape": list(dims_to_tuple(engine.get_tensor_shape(name)))}
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
    device: int = 0,
) -> dict[str, Any]:
    """Build ``engine_path`` (and its ``.json`` metadata) from a precision-typed ONNX graph.

    Args:
        onnx_path: ``model.fp16.onnx`` / ``model.int8.onnx`` (Q/DQ) / ``model.sim.onnx`` for fp32.
        engine_path: where the engine goes, conventionally ``model.<precision>.engine``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: what the graph encodes, checked after the build.
        shapes: input name → static shape or ``(min, opt, max)``. Defaults to the graph's static shapes.
        workspace_gib: builder workspace limit in GiB. Defaults to 2.
        timing_cache: timing-cache file, loaded when present and saved (atomically) after the build,
            so rebuilds on the same GPU skip tactic timing. Defaults to no cache.
        dla_core: run on this DLA core with GPU fallback. Defaults to the GPU. DLA exists on Jetson
            AGX Orin with TensorRT 10.x (JetPack 6) or TensorRT 11.4.1+ (JetPack 7.2.2+); TensorRT
            11.0-11.3 have no DLA support. Needs a static profile (min = opt = max).
        plugin_libs: plugin libraries to load first (the ``EdgesegFusedDDC`` plugin).
        check_precision: refuse an engine whose requested precision was not realized. Defaults to True.
        device: CUDA device to build for. Defaults to 0.

    Returns:
        The metadata written beside the engine.

    Raises:
        MissingDependencyError: TensorRT (or cuda-python) is not installed; names the ``trt`` extra.
        EdgesegError: parse/build failure, bad shapes (or a dynamic profile with ``dla_core``), or the
            precision was not realized.
    """
    trt_mod = require_tensorrt("building TensorRT engines")
    from edgeseg.trt._cuda import cuda_call, cudart, gpu_info

    if precision not in PRECISIONS:
        raise EdgesegError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise EdgesegError(f"{onnx_path}: ONNX file not found")
    cuda_call(cudart().cudaSetDevice(device))
    gpu = gpu_info(device)
    started = time.perf_counter()

    logger = trt_mod.Logger(trt_mod.Logger.WARNING)
    builder = trt_mod.Builder(logger)
    plugins = load_plugin_libraries(plugin_libs)
    network, _parser = network_from_onnx(builder, logger, onnx_path)
    graph_inputs = {tensor.name: dims_to_tuple(tensor.shape)
                    for tensor in (network.get_input(i) for i in range(network.num_inputs))}
    profile = resolve_profile(graph_inputs, shapes)
    if dla_core is not None:
        check_dla_profile(profile, dla_core)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else None
    config, cache_reused = create_config(builder, profile, precision=precision, workspace_gib=workspace_gib,
                                         timing_cache=cache_bytes, dla_core=dla_core)
    tf32 = config.get_flag(trt_mod.BuilderFlag.TF32)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgesegError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    plan = bytes(memoryview(serialized))
    if cache_path is not None:
        with atomic_write(cache_path) as f:
            f.write(bytes(memoryview(config.get_timing_cache().serialize())))

    runtime = trt_mod.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise EdgesegError(f"{engine_path}: TensorRT could not deserialize the engine it just built")
    inspector = engine.create_engine_inspector()
    layer_info = inspector.get_engine_information(trt_mod.LayerInformationFormat.JSON)
    realized = check_precision_realized(layer_info, precision)
    if check_precision and not realized:
        raise EdgesegError(f"{onnx_path}: {realized.message}; the engine was not written")
    inputs, outputs = _io_description(engine)

    with atomic_write(engine_path) as f:
        f.write(plan)
    meta = {
        "format": METADATA_FORMAT,
        "engine": engine_path.name,
        "engine_sha256": sha256_bytes(plan),
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": sha256_file(onnx_path),
        "precision": precision,
        "precision_check": {"realized": realized.realized, "layer_input_types": realized.counts},
        "tensorrt_version": str(trt_mod.__version__),
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
            "plugin_libs": plugins,
            "timing_cache": str(cache_path) if cache_path is not None else None,
            "timing_cache_reused": cache_reused,
        },
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(metadata_path(engine_path), meta)
    return meta
