"""Graph simplification with onnxsim (constant folding, BN folding, dead-node removal)."""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.export.onnx_export import carry_metadata, check_and_infer, load_onnx, op_histogram, save_onnx

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
    """

    path: Path
    nodes_before: int
    nodes_after: int
    op_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def simplify_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  *, test_batch: int | None = None) -> SimplifyResult:
    """Simplify ``src`` into ``dst`` with onnxsim and check that outputs still match.

    Args:
        src: exported ONNX file.
        dst: destination file (written atomically).
        test_batch: batch size used for onnxsim's random-input equality check when the batch
            dimension is dynamic. Defaults to 1.

    Returns:
        A :class:`SimplifyResult` with the node counts.

    Raises:
        EdgesegError: the input is not an ONNX model or onnxsim's equality check fails.
    """
    import onnxsim

    start = time.perf_counter()
    model = load_onnx(src)
    before = len(model.graph.node)
    test_shapes = None
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        shape = [d.dim_value if d.HasField("dim_value") else (test_batch or 1) for d in dims]
        test_shapes = {graph_input.name: shape}
    # check_n=1: onnxsim compares the simplified and original graphs on one random input with
    # ONNX Runtime, which cannot run TensorRT plugin nodes; graphs with them skip that check.
    has_plugins = any(n.domain not in ("", "ai.onnx") for n in model.graph.node)
    try:
        # onnxsim prints its check progress on stdout, which `--json` output must not contain.
        with contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(model, check_n=0 if has_plugins else 1,
                                              test_input_shapes=test_shapes, certify=False)
    except Exception as e:  # onnxsim wraps C++ failures in RuntimeError / ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgesegError(f"{src}: onnxsim failed ({first})") from e
    if not ok:
        raise EdgesegError(f"{src}: onnxsim's simplified graph does not match the original on a random input")
    carry_metadata(model, simplified)  # onnxsim writes its own bookkeeping there
    simplified = check_and_infer(simplified, label=str(dst))
    save_onnx(simplified, dst)
    hist = op_histogram(simplified)
    return SimplifyResult(path=Path(dst), nodes_before=before, nodes_after=sum(hist.values()),
                          op_types=hist, seconds=time.perf_counter() - start)
