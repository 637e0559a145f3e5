"""A tiny FP32 ONNX segmenter that takes BGR pixels, NHWC (or NCHW), written node by node (no PyTorch).

Importable from every test package as ``tiny_graphs`` (``tests/`` is on ``sys.path``, see
``tiny_nets``). Its class scores are a 1x1 conv whose weights are not symmetric in the channels, so
feeding it RGB instead of BGR, or NCHW memory read as NHWC, changes the class map: a wrong feed
fails the tests that use it instead of passing by symmetry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["NHWC_BGR_WEIGHTS", "nhwc_bgr_graph", "nhwc_bgr_reference"]

#: Class scores from the (B, G, R) channels: class 0 likes blue, class 1 green, class 2 red.
NHWC_BGR_WEIGHTS = np.array([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0]], np.float32)


def nhwc_bgr_graph(path: Path, size: tuple[int, int], *, dynamic_batch: bool = False,
                   layout: str = "nhwc") -> Path:
    """Write the graph: input ``pixels`` ``(N, H, W, 3)`` BGR (``(N, 3, H, W)`` with ``layout="nchw"``),
    output ``scores`` ``(N, 3, H, W)`` logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    n: int | str = "batch" if dynamic_batch else 1
    weights = numpy_helper.from_array(NHWC_BGR_WEIGHTS.reshape(3, 3, 1, 1), "w")
    bias = numpy_helper.from_array(np.array([0.1, 0.0, -0.1], np.float32), "b")
    nhwc = layout == "nhwc"
    nodes = [helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2])] if nhwc else []
    nodes.append(helper.make_node("Conv", ["nchw" if nhwc else "pixels", "w", "b"], ["scores"]))
    shape = [n, h, w, 3] if nhwc else [n, 3, h, w]
    graph = helper.make_graph(
        nodes, f"{layout}_bgr", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, 3, h, w])], [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def nhwc_bgr_reference(frames_rgb: np.ndarray, mean: tuple[float, float, float],
                       std: tuple[float, float, float]) -> np.ndarray:
    """What the graph computes on ``(N, H, W, 3)`` RGB frames fed correctly: normalised with the
    RGB ``mean``/``std`` (0..255 units), flipped to BGR, NHWC; returns ``(N, 3, H, W)`` scores."""
    x = (frames_rgb.astype(np.float32) - np.float32(mean)) / np.float32(std)
    bgr = x[..., ::-1]
    scores = np.einsum("kc,nhwc->nkhw", NHWC_BGR_WEIGHTS, bgr)
    return scores + np.array([0.1, 0.0, -0.1], np.float32)[None, :, None, None]
