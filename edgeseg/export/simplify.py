"""Graph simplification with onnxsim (constant folding, BN folding, dead-node removal)."""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.export.onnx_export import carry_metadata, check_and_infer, load_onnx, op_histogram, save_onnx
from edgeseg.stopping import shielded

__all__ = ["SimplifyResult", "simplify_onnx"]


@dataclass
class SimplifyResult:
    """Node counts before and after :func:`simplify_onnx`.

    Args:
        path: the simplified ONNX file.
        nodes_before: node count of the input graph.
        nodes_after: node count of the simplified graph.
        op_types: node count per op type after simplification.
        seconds: wall time.
        output_check: ``"passed"`` when ONNX Runtime ran both graphs and their outputs agreed, else
            ``"skipped: <why>"`` (nodes of a foreign custom domain, or the plugin op's CPU kernel
            cannot be loaded here).
    """

    path: Path
    nodes_before: int
    nodes_after: int
    op_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    output_check: str = "passed"


def _check_equal(original: Any, simplified: Any, shape: list[int], *, label: str) -> None:
    """Run both graphs on one seeded random input; raise unless every output matches.

    Outputs match as :func:`edgeseg.compare.match_outputs` decides: float outputs within
    :data:`~edgeseg.compare.OUTPUT_RTOL` of their magnitude, class maps with at most
    :data:`~edgeseg.compare.LABEL_MISMATCH` of pixels flipped.
    """
    import numpy as np

    from edgeseg.compare import match_outputs
    from edgeseg.runners.onnxrt import OnnxrtRunner

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    outputs = []
    for model in (original, simplified):
        with OnnxrtRunner(model.SerializeToString(), name=label) as runner:
            feed = {runner.get_input_metadata()[0].name: x}
            outputs.append([np.asarray(v) for v in runner.infer(feed).values()])
    for a, b in zip(*outputs, strict=True):
        if a.shape != b.shape:
            raise EdgesegError(f"{label}: simplification changed an output shape {a.shape} → {b.shape}")
        match = match_outputs(a, b)
        if not match:
            raise EdgesegError(f"{label}: the simplified graph's output differs from the original's "
                               f"({match}); onnxsim changed the model")


def simplify_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  *, test_batch: int | None = None) -> SimplifyResult:
    """Simplify ``src`` into ``dst`` with onnxsim and check that outputs still match.

    Args:
        src: exported ONNX file.
        dst: destination file (written atomically).
        test_batch: batch size of the equality check's input when the batch dimension is
            dynamic. Defaults to 1.

    Returns:
        A :class:`SimplifyResult` with the node counts.

    Raises:
        EdgesegError: the input is not an ONNX model, or the simplified graph's output differs
            from the original's by more than :data:`edgeseg.compare.OUTPUT_RTOL` (relative to its
            magnitude).
    """
    import onnxsim

    from edgeseg.ops.onnx_plugin import PLUGIN_DOMAIN

    start = time.perf_counter()
    model = load_onnx(src)
    before = len(model.graph.node)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else (test_batch or 1) for d in dims]
    try:
        # onnxsim's own check compares with a fixed atol of 1e-5, which float reassociation in
        # BN folding exceeds on deep nets with large activations; the check below scales with
        # the output instead. onnxsim prints progress on stdout, which `--json` must not see.
        with contextlib.redirect_stdout(io.StringIO()), shielded():
            simplified, _ = onnxsim.simplify(model, check_n=0, certify=False,
                                             test_input_shapes={model.graph.input[0].name: shape})
    except Exception as e:  # onnxsim wraps C++ failures in RuntimeError / ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"{src}: onnxsim failed ({first})") from e
    # OnnxrtRunner runs edgeseg's own plugin nodes through their CPU kernel; a graph with nodes of
    # any other custom domain (someone else's TensorRT plugin) cannot run here and goes unchecked.
    foreign = sorted({n.domain for n in model.graph.node} - {"", "ai.onnx", PLUGIN_DOMAIN})
    output_check = f"skipped: nodes of custom domains {foreign} cannot run in ONNX Runtime"
    if not foreign:
        try:
            _check_equal(model, simplified, shape, label=str(src))
            output_check = "passed"
        except MissingDependencyError as e:  # only plugin graphs need a package beyond the core set
            output_check = f"skipped: {e}"
    carry_metadata(model, simplified)  # onnxsim writes its own bookkeeping there
    simplified = check_and_infer(simplified, label=str(dst))
    save_onnx(simplified, dst)
    hist = op_histogram(simplified)
    return SimplifyResult(path=Path(dst), nodes_before=before, nodes_after=sum(hist.values()),
                          op_types=hist, seconds=time.perf_counter() - start, output_check=output_check)
