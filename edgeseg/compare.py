"""Reference vs candidate: feed images to a runner and compare its outputs with a reference's.

Three places judge a graph against a reference: ``edgeseg validate`` (every artifact of a build vs
the PyTorch model), the INT8 accuracy guard (each quantization attempt vs the PyTorch model) and
graph simplification (the graph after onnxsim vs before). They share this module:

* :func:`infer` runs preprocessed images through any runner, in chunks of its static batch (the
  last chunk padded with zero images whose outputs are dropped), and returns its primary output:
  ``logits``, else ``labels``, else the only output.
* :func:`compare_outputs` measures segmentation agreement of whole output arrays: pixel agreement,
  max / mean absolute logit error and, given ground truth, each side's mIoU and the deltas. It is
  :class:`edgeseg.metrics.Agreement` in one call (validate streams images into an ``Agreement``
  itself); the maths lives in :mod:`edgeseg.metrics`.
* :func:`match_outputs` decides whether two outputs are the same computation up to float rounding,
  with a bound scaled to the output's magnitude.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.metrics import Agreement, AgreementMetrics, logit_error, pixel_agreement

if TYPE_CHECKING:
    from edgeseg.runners.base import BaseRunner

__all__ = [
    "OUTPUT_RTOL",
    "LABEL_MISMATCH",
    "OutputMatch",
    "compare_outputs",
    "infer",
    "match_outputs",
    "primary_output",
]

#: Largest allowed ``max |candidate − reference|`` of float outputs, relative to
#: ``max(1, max |reference|)``: float reassociation (BN folding, fused kernels) stays far below it.
OUTPUT_RTOL = 1e-4
#: Largest allowed share of differing pixels of class-map outputs (``--output argmax``): a near-tie
#: of two logits may flip a rare pixel under the same reassociation.
LABEL_MISMATCH = 1e-3


def primary_output(outputs: dict[str, Any], name: str) -> np.ndarray:
    """The output a segmentation graph is judged by: ``logits``, else ``labels``, else the only one.

    Args:
        outputs: a runner's ``{output name: array}``.
        name: the runner's name, for the error message.

    Raises:
        EdgesegError: several outputs and none is named ``logits`` or ``labels``.
    """
    value = outputs.get("logits", outputs.get("labels"))
    if value is None:
        if len(outputs) != 1:
            raise EdgesegError(f"{name}: expected output 'logits' or 'labels', got {sorted(outputs)}")
        value = next(iter(outputs.values()))
    return np.asarray(value)


def infer(runner: BaseRunner, images: np.ndarray, *, batch_size: int = 1,
          progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Run preprocessed images through an active runner; its primary output for every image.

    Args:
        runner: an active runner with one input.
        images: ``(N, 3, H, W)`` network inputs.
        batch_size: images per call when the runner's batch dimension is dynamic. Defaults to 1.
        progress: called as ``progress(images done, N)`` after each call.

    Returns:
        ``(N, K, H, W)`` logits or ``(N, H, W)`` labels, as the runner gives them.

    Raises:
        EdgesegError: the runner has several inputs, no images are given, or an output is ambiguous.
    """
    metas = runner.get_input_metadata()
    if len(metas) != 1:
        raise EdgesegError(f"{runner.name}: expected one input, got {[m.name for m in metas]}")
    if len(images) == 0:
        raise EdgesegError(f"{runner.name}: no images to run")
    meta = metas[0]
    static = meta.shape[0] if isinstance(meta.shape[0], int) else None
    step = static or batch_size
    outs = []
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        feed = chunk
        if static is not None and len(chunk) < static:
            # A static-batch artifact takes exactly its batch: pad with zero images, drop their outputs.
            feed = np.concatenate([chunk, np.zeros((static - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outs.append(primary_output(runner.infer({meta.name: feed}), runner.name)[:len(chunk)])
        if progress:
            progress(start + len(chunk), len(images))
    return np.concatenate(outs)


def compare_outputs(reference: Any, candidate: Any, *, num_classes: int, targets: Any = None,
                    ignore_index: int = 255) -> AgreementMetrics:
    """How closely ``candidate`` reproduces ``reference`` over a whole set of outputs.

    Args:
        reference: reference outputs: logits ``(N, K, H, W)`` float or labels ``(N, H, W)`` int.
        candidate: the compared outputs, same images.
        num_classes: number of classes K.
        targets: optional ground truth ``(N, H, W)`` for each side's mIoU and the deltas.
        ignore_index: target value excluded from the ground-truth metrics. Defaults to 255.

    Returns:
        :class:`edgeseg.metrics.AgreementMetrics` (logit errors NaN unless both sides are logits).
    """
    agreement = Agreement(num_classes, ignore_index)
    agreement.update(reference, candidate, targets)
    return agreement.compute()


@dataclass(frozen=True)
class OutputMatch:
    """Result of :func:`match_outputs`; true when ``error <= bound`` (NaN never matches).

    Args:
        kind: ``"logits"`` (float outputs) or ``"labels"`` (class maps).
        error: max absolute difference (logits) or share of differing pixels (labels).
        bound: the largest error allowed.
    """

    kind: str
    error: float
    bound: float

    def __bool__(self) -> bool:
        return bool(self.error <= self.bound)

    def __str__(self) -> str:
        what = "max |diff|" if self.kind == "logits" else "share of differing pixels"
        return f"{what} {self.error:.3g} {'<=' if self else '>'} {self.bound:.3g}"


def match_outputs(reference: Any, candidate: Any, *, rtol: float = OUTPUT_RTOL,
                  max_mismatch: float = LABEL_MISMATCH) -> OutputMatch:
    """Whether two outputs of the same input are the same computation up to rounding.

    Args:
        reference: the trusted output (integer class map or float tensor).
        candidate: the output to check, same shape.
        rtol: float outputs: allowed max absolute difference relative to ``max(1, max |reference|)``.
            Defaults to :data:`OUTPUT_RTOL`.
        max_mismatch: integer outputs: allowed share of differing elements. Defaults to
            :data:`LABEL_MISMATCH`.

    Raises:
        EdgesegError: the shapes differ, or one output is a class map and the other is not.
    """
    a, b = np.asarray(reference), np.asarray(candidate)
    if a.shape != b.shape:
        raise EdgesegError(f"output shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return OutputMatch("labels" if a.dtype.kind in "iu" else "logits", 0.0, 0.0)
    if a.dtype.kind in "iu":
        return OutputMatch("labels", 1.0 - pixel_agreement(a, b) / 100.0, max_mismatch)
    return OutputMatch("logits", logit_error(a, b)[0], rtol * max(1.0, float(np.abs(a).max())))
