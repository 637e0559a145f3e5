"""Segmentation metrics from one confusion matrix, and agreement metrics between two backends.

Every accuracy number edgeseg reports (training validation, ``edgeseg validate``, the model card)
comes from :class:`ConfusionMatrix`: a ``K × K`` count matrix ``p`` accumulated with
``torch.bincount``, rows = ground truth, columns = prediction, pixels whose target equals the
ignore index excluded. From it (all values in percent):

* PA (pixel accuracy)        = Σ_i p_ii / Σ_ij p_ij
* MPA (mean pixel accuracy)  = mean_i p_ii / Σ_j p_ij, over classes present in the ground truth
* IoU_i                      = p_ii / (Σ_j p_ij + Σ_j p_ji − p_ii)
* mIoU                       = mean IoU over classes present in the ground truth *or* the prediction
* FWIoU                      = Σ_i (Σ_j p_ij / Σ_ij p_ij) · IoU_i

Averaging choice: a class that appears in neither the ground truth nor the prediction has an
undefined IoU (0/0). It is reported as NaN in the per-class list (``null`` in JSON) and left out
of the mean, so evaluating a subset of a dataset does not punish a model for classes the subset
never shows. A class that is predicted but absent from the ground truth has IoU 0 and *does* count
(false positives are errors). Accuracy of a class absent from the ground truth is NaN and left out
of MPA.

:class:`Agreement` compares two backends running the same model on the same inputs (PyTorch vs
ONNX Runtime vs TensorRT): pixel agreement of their argmax maps, max/mean absolute logit error,
and, when ground truth is given, each backend's metrics and the mIoU / per-class IoU deltas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgeseg.errors import EdgesegError

__all__ = [
    "CLASS_SHARE_MIN",
    "against",
    "ConfusionMatrix",
    "SegMetrics",
    "Agreement",
    "AgreementMetrics",
    "pixel_agreement",
    "miou_delta",
    "logit_error",
    "to_labels",
]

ArrayLike = torch.Tensor | np.ndarray


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.cpu()


def _as_labels(x: ArrayLike, what: str) -> torch.Tensor:
    """Flattened int64 class ids; floats are refused (a logit map passed by mistake)."""
    t = _as_tensor(x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise EdgesegError(
            f"{what}: expected integer class ids, got dtype {t.dtype} (take argmax of logits first)"
        )
    return t.reshape(-1).to(torch.int64)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def _nanmean(values: torch.Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


@dataclass
class SegMetrics:
    """Metrics computed from a confusion matrix; all values in percent, NaN where undefined.

    Args:
        pa: pixel accuracy.
        mpa: mean per-class pixel accuracy over classes present in the ground truth.
        miou: mean IoU over classes present in the ground truth or the prediction.
        fwiou: frequency-weighted IoU (weights = ground-truth pixel share of each class).
        iou: per-class IoU; NaN for a class absent from both ground truth and prediction.
        acc: per-class accuracy (recall); NaN for a class absent from the ground truth.
        num_pixels: number of pixels counted (ignore-index pixels excluded).
    """

    pa: float
    mpa: float
    miou: float
    fwiou: float
    iou: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    num_pixels: int = 0

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready dict (NaN → ``None``); per-class values keyed by class name if given.

        Args:
            class_names: one name per class. Defaults to the class indices as strings.
        """
        names = class_names if class_names is not None else [str(i) for i in range(len(self.iou))]
        if len(names) != len(self.iou):
            raise ValueError(f"{len(names)} class names for {len(self.iou)} classes")
        return {
            "pa": _nan_to_none(self.pa),
            "mpa": _nan_to_none(self.mpa),
            "miou": _nan_to_none(self.miou),
            "fwiou": _nan_to_none(self.fwiou),
            "num_pixels": self.num_pixels,
            "iou": {n: _nan_to_none(v) for n, v in zip(names, self.iou, strict=True)},
            "acc": {n: _nan_to_none(v) for n, v in zip(names, self.acc, strict=True)},
        }


class ConfusionMatrix:
    """Accumulates a ``num_classes × num_classes`` confusion matrix (rows: target, cols: prediction).

    Args:
        num_classes: number of classes K; valid ids are ``0 .. K-1``.
        ignore_index: target value excluded from counting. Defaults to 255.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(logits.argmax(1), masks)
        >>> cm.compute().miou
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one batch of predictions.

        Args:
            pred: predicted class ids, any shape (e.g. (N, H, W)); tensor or numpy array.
            target: ground-truth class ids, same number of elements; ``ignore_index`` pixels skipped.

        Raises:
            EdgesegError: shapes differ, float input, or an id outside ``[0, num_classes)``
                (for targets: outside that range and not the ignore index).
        """
        p, t = _as_labels(pred, "prediction"), _as_labels(target, "target")
        if p.numel() != t.numel():
            raise EdgesegError(
                f"prediction has {p.numel()} elements but target has {t.numel()} "
                f"(shapes {tuple(_as_tensor(pred).shape)} vs {tuple(_as_tensor(target).shape)})"
            )
        k = self.num_classes
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
            raise EdgesegError(f"prediction ids span [{int(p.min())}, {int(p.max())}], outside [0, {k})")
        keep = t != self.ignore_index
        p, t = p[keep], t[keep]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise EdgesegError(
                f"target ids span [{int(t.min())}, {int(t.max())}], "
                f"outside [0, {k}) and not the ignore index {self.ignore_index}"
            )
        # One bincount over the flattened (target, prediction) pair index fills the whole matrix.
        self.mat += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts into this one (e.g. from another worker); returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) into a "
                f"{self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self.mat += other.mat
        return self

    def reset(self) -> None:
        """Zero all counts."""
        self.mat.zero_()

    def compute(self) -> SegMetrics:
        """Metrics of everything accumulated so far (see the module docstring for the formulas)."""
        m = self.mat.to(torch.float64)
        tp = m.diag()
        gt = m.sum(1)  # pixels of each class in the target
        pr = m.sum(0)  # pixels predicted as each class
        total = m.sum()
        union = gt + pr - tp
        nan = torch.tensor(math.nan, dtype=torch.float64)
        # where() keeps 0/0 classes as NaN instead of letting them poison the means.
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
        if total > 0:
            pa = float(tp.sum() / total)
            fwiou = float((gt / total * torch.nan_to_num(iou)).sum())
        else:
            pa = fwiou = math.nan
        return SegMetrics(
            pa=100 * pa,
            mpa=100 * _nanmean(acc),
            miou=100 * _nanmean(iou),
            fwiou=100 * fwiou,
            iou=(100 * iou).tolist(),
            acc=(100 * acc).tolist(),
            num_pixels=int(total),
        )


def to_labels(output: ArrayLike, num_classes: int | None = None, what: str = "output") -> torch.Tensor:
    """Class ids of a model output: argmax over dim 1 of float logits, integer labels as they are.

    Args:
        output: logits ``(N, K, H, W)`` float, or class ids ``(N, H, W)`` int (``--output argmax``).
        num_classes: when given, logits must have exactly this many channels.
        what: how the error message names the output.

    Returns:
        int64 ``(N, H, W)`` on the CPU.
    """
    t = _as_tensor(output)
    if not t.is_floating_point():
        return t.to(torch.int64)
    if t.ndim != 4 or (num_classes is not None and t.shape[1] != num_classes):
        raise EdgesegError(f"{what}: logits must be (N, {num_classes or 'K'}, H, W), got {tuple(t.shape)}")
    if isinstance(output, np.ndarray):
        # NumPy's argmax over the channel axis of an NCHW array is ~8x torch's on the CPU (3 ms vs
        # 0.4 ms for 7x128x128): the accuracy guard and validation take it for every image.
        return torch.from_numpy(output.argmax(1).astype(np.int64, copy=False))
    return t.argmax(1)


def against(value: float, limit: float, digits: int = 2) -> str:
    """``value`` with as many decimals as it takes to show which side of ``limit`` it is on.

    A failure message must not round its way into looking like a pass: 99.997 against a gate of
    100.0 prints as "99.997", not "100.00" (at least ``digits`` decimals).
    """
    text = f"{value:.{digits}f}"
    def misleading(shown: float) -> bool:
        return (value < limit) != (shown < limit) or (value > limit) != (shown > limit)

    while digits < 12 and misleading(float(text)):
        digits += 1
        text = f"{value:.{digits}f}"
    return text


def pixel_agreement(pred_a: ArrayLike, pred_b: ArrayLike) -> float:
    """Percentage of pixels where two argmax maps give the same class.

    Args:
        pred_a: class ids from backend A, any shape.
        pred_b: class ids from backend B, same number of elements.
    """
    a, b = _as_labels(pred_a, "pred_a"), _as_labels(pred_b, "pred_b")
    if a.numel() != b.numel():
        raise EdgesegError(f"cannot compare label maps of {a.numel()} and {b.numel()} elements")
    return 100.0 * float((a == b).sum()) / a.numel() if a.numel() else math.nan


def miou_delta(reference: SegMetrics, other: SegMetrics) -> float:
    """``other.miou − reference.miou`` in percentage points (negative: the deployed model lost accuracy)."""
    return other.miou - reference.miou


def logit_error(logits_a: ArrayLike, logits_b: ArrayLike) -> tuple[float, float]:
    """Max and mean absolute difference between two logit tensors of the same shape.

    Returns:
        ``(max_abs_error, mean_abs_error)``, computed in float64.
    """
    a, b = _as_tensor(logits_a), _as_tensor(logits_b)
    if a.shape != b.shape:
        raise EdgesegError(f"logit shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a.to(torch.float64) - b.to(torch.float64)).abs()
    return (float(d.max()), float(d.mean())) if d.numel() else (math.nan, math.nan)


@dataclass
class AgreementMetrics:
    """How closely backend B reproduces reference backend A. Percentages unless noted.

    Args:
        pixel_agreement: share of pixels with the same argmax class.
        agreement_miou: mIoU of B's argmax map scored against A's (no ground truth needed).
        max_abs_error: largest absolute logit difference (logit units); NaN when either backend
            gave only labels.
        mean_abs_error: mean absolute logit difference (logit units); NaN likewise.
        reference: A's metrics against the ground truth, if targets were given.
        other: B's metrics against the ground truth, if targets were given.
        miou_delta: ``other.miou − reference.miou``; NaN without ground truth.
        iou_delta: per-class IoU of B minus that of A; empty without ground truth.
        vanished: classes A predicts on at least :data:`CLASS_SHARE_MIN` of the pixels that B never
            predicts (the "one class everywhere" failure of reduced precision).
        appeared: classes B predicts on at least that share that A never predicts.
    """

    pixel_agreement: float
    agreement_miou: float
    max_abs_error: float
    mean_abs_error: float
    reference: SegMetrics | None = None
    other: SegMetrics | None = None
    miou_delta: float = math.nan
    iou_delta: list[float] = field(default_factory=list)
    vanished: list[int] = field(default_factory=list)
    appeared: list[int] = field(default_factory=list)

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready dict (NaN → ``None``)."""
        out: dict[str, Any] = {
            "pixel_agreement": _nan_to_none(self.pixel_agreement),
            "agreement_miou": _nan_to_none(self.agreement_miou),
            "max_abs_error": _nan_to_none(self.max_abs_error),
            "mean_abs_error": _nan_to_none(self.mean_abs_error),
            "miou_delta": _nan_to_none(self.miou_delta),
        }
        if self.reference is not None and self.other is not None:
            names = class_names if class_names is not None else [str(i) for i in range(len(self.iou_delta))]
            out["reference"] = self.reference.to_dict(class_names)
            out["other"] = self.other.to_dict(class_names)
            out["iou_delta"] = {n: _nan_to_none(v) for n, v in zip(names, self.iou_delta, strict=True)}
        return out


#: Share of the pixels (0.1 %) above which a class that one side predicts and the other never does
#: is reported as vanished or appeared.
CLASS_SHARE_MIN = 1e-3


class Agreement:
    """Accumulates agreement between a reference backend A and a backend B over many batches.

    Each side may be logits (N, K, H, W) float — argmax is taken over dim 1 — or class ids
    (N, H, W) int, as produced by engines exported with ``--output argmax``. Logit errors are only
    measured when both sides are logits.

    Args:
        num_classes: number of classes K.
        ignore_index: target value excluded from the ground-truth metrics. Defaults to 255.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.vs_reference = ConfusionMatrix(num_classes, ignore_index)
        self.reference = ConfusionMatrix(num_classes, ignore_index)
        self.other = ConfusionMatrix(num_classes, ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        for cm in (self.vs_reference, self.reference, self.other):
            cm.reset()
        self._agree = 0
        self._pixels = 0
        self._max_err = -math.inf
        self._sum_err = 0.0
        self._num_logits = 0
        self._has_target = False
        self._labels_only = False

    def update(self, out_a: ArrayLike, out_b: ArrayLike, target: ArrayLike | None = None) -> None:
        """Add one batch.

        Args:
            out_a: reference backend output: logits (N, K, H, W) or labels (N, H, W).
            out_b: compared backend output, same batch and resolution.
            target: optional ground truth (N, H, W) for the per-backend metrics.
        """
        a, b = _as_tensor(out_a), _as_tensor(out_b)
        if a.is_floating_point() and b.is_floating_point():
            err_max, err_mean = logit_error(a, b)
            self._max_err = max(self._max_err, err_max)
            self._sum_err += err_mean * a.numel()
            self._num_logits += a.numel()
        else:
            self._labels_only = True
        la = to_labels(a, self.num_classes, "reference output")
        lb = to_labels(b, self.num_classes, "compared output")
        if la.shape != lb.shape:
            raise EdgesegError(f"label maps differ in shape: {tuple(la.shape)} vs {tuple(lb.shape)}")
        self._agree += int((la == lb).sum())
        self._pixels += la.numel()
        self.vs_reference.update(lb, la)
        if target is not None:
            self._has_target = True
            self.reference.update(la, target)
            self.other.update(lb, target)

    def compute(self) -> AgreementMetrics:
        """The agreement metrics of everything accumulated so far."""
        no_logits = self._labels_only or self._num_logits == 0
        # vs_reference counts (reference class, compared class) pairs: rows are A's predictions.
        a_pixels, b_pixels = self.vs_reference.mat.sum(1), self.vs_reference.mat.sum(0)
        floor = CLASS_SHARE_MIN * max(self._pixels, 1)
        result = AgreementMetrics(
            pixel_agreement=100.0 * self._agree / self._pixels if self._pixels else math.nan,
            agreement_miou=self.vs_reference.compute().miou,
            max_abs_error=math.nan if no_logits else self._max_err,
            mean_abs_error=math.nan if no_logits else self._sum_err / self._num_logits,
            vanished=[int(c) for c in torch.nonzero((a_pixels >= floor) & (b_pixels == 0)).flatten()],
            appeared=[int(c) for c in torch.nonzero((b_pixels >= floor) & (a_pixels == 0)).flatten()],
        )
        if self._has_target:
            ref, oth = self.reference.compute(), self.other.compute()
            result.reference, result.other = ref, oth
            result.miou_delta = miou_delta(ref, oth)
            result.iou_delta = [o - r for r, o in zip(ref.iou, oth.iou, strict=True)]
        return result
