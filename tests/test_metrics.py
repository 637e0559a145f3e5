"""Metrics against hand-worked confusion matrices."""

import json
import math

import numpy as np
import pytest
import torch

from edgeseg.errors import EdgesegError
from edgeseg.metrics import Agreement, ConfusionMatrix, logit_error, miou_delta, pixel_agreement, to_labels

# Hand-worked example, K = 3. Valid (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel
# is ignored. Matrix (rows target): [[1,1,0],[0,2,0],[1,0,0]].
# PA 3/5; acc (1/2, 1, 0) -> MPA 50; IoU (1/3, 2/3, 0) -> mIoU 33.3; FWIoU 2/5·1/3 + 2/5·2/3 = 40.
TARGET = [0, 0, 1, 1, 2, 255]
PRED = [0, 1, 1, 1, 0, 2]


def test_hand_worked_matrix_and_metrics():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor(PRED), torch.tensor(TARGET))
    assert cm.mat.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = cm.compute()
    assert m.pa == pytest.approx(60.0)
    assert m.mpa == pytest.approx(50.0)
    assert m.iou == pytest.approx([100 / 3, 200 / 3, 0.0])
    assert m.miou == pytest.approx(100 / 3)
    assert m.fwiou == pytest.approx(40.0)
    assert m.num_pixels == 5


def test_class_absent_from_gt_and_prediction_is_nan_and_excluded():
    cm = ConfusionMatrix(4)  # class 3 never occurs
    cm.update(np.array(PRED), np.array(TARGET))
    m = cm.compute()
    assert math.isnan(m.iou[3]) and math.isnan(m.acc[3])
    assert m.miou == pytest.approx(100 / 3)
    assert m.mpa == pytest.approx(50.0)
    assert m.fwiou == pytest.approx(40.0)
    d = m.to_dict(["a", "b", "c", "d"])
    assert d["iou"]["d"] is None and d["acc"]["d"] is None
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN left


def test_predicted_only_class_counts_as_zero_iou():
    # target [0, 0], pred [0, 3]: IoU0 = 1/(2+1-1) = 1/2, IoU3 = 0/(0+1) = 0, classes 1, 2 absent.
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 3]), torch.tensor([0, 0]))
    m = cm.compute()
    assert m.iou[0] == pytest.approx(50.0) and m.iou[3] == 0.0
    assert math.isnan(m.iou[1]) and math.isnan(m.iou[2])
    assert m.miou == pytest.approx(25.0)
    assert m.mpa == pytest.approx(50.0)  # class 3 has no GT pixels: no accuracy
    assert m.fwiou == pytest.approx(50.0)


def test_matches_bruteforce_on_random_batches_and_merge():
    rng = np.random.default_rng(0)
    k = 5
    target = rng.integers(0, k, size=(3, 7, 9))
    target[0, :2] = 255
    pred = rng.integers(0, k, size=(3, 7, 9))
    expected = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != 255:
            expected[t, p] += 1
    a, b = ConfusionMatrix(k), ConfusionMatrix(k)
    a.update(pred[:2], target[:2])
    b.update(torch.from_numpy(pred[2:]), torch.from_numpy(target[2:]))
    a.merge(b)
    np.testing.assert_array_equal(a.mat.numpy(), expected)
    a.reset()
    assert int(a.mat.sum()) == 0


def test_custom_ignore_index():
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update([0, 1, 1], [0, -1, 1])
    assert cm.mat.tolist() == [[1, 0], [0, 1]]


def test_empty_matrix_is_all_nan():
    m = ConfusionMatrix(2).compute()
    assert all(math.isnan(v) for v in (m.pa, m.mpa, m.miou, m.fwiou))


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        ([0, 3], [0, 0], "prediction ids"),
        ([0, -1], [0, 0], "prediction ids"),
        ([0, 0], [0, 7], "target ids"),
        ([0.0, 1.0], [0, 1], "integer class ids"),
        ([0, 1, 1], [0, 1], "elements"),
    ],
)
def test_bad_inputs_raise(pred, target, match):
    with pytest.raises(EdgesegError, match=match):
        ConfusionMatrix(3).update(np.array(pred), np.array(target))


def test_merge_refuses_other_class_count():
    with pytest.raises(ValueError, match="cannot merge a 4-class matrix"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))


def test_pixel_agreement_logit_error_and_delta():
    assert pixel_agreement(np.array([[0, 1], [2, 2]]), torch.tensor([[0, 1], [2, 0]])) == pytest.approx(75.0)
    a = torch.zeros(1, 2, 2, 2)
    b = a.clone()
    b[0, 1, 0, 0] = -0.5
    b[0, 0, 1, 1] = 0.25
    assert logit_error(a, b) == pytest.approx((0.5, 0.75 / 8))
    ref, other = ConfusionMatrix(3), ConfusionMatrix(3)
    ref.update(PRED, TARGET)
    other.update(TARGET[:5] + [0], TARGET)  # perfect prediction
    assert miou_delta(ref.compute(), other.compute()) == pytest.approx(100 - 100 / 3)


def test_agreement_accumulator_with_logits_and_targets():
    k = 3
    target = torch.tensor([[[0, 1], [2, 255]]])
    logits_a = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 0]]]), k).permute(0, 3, 1, 2).float()
    logits_b = logits_a.clone()
    logits_b[0, :, 1, 0] = torch.tensor([0.0, 2.0, 1.0])  # flips pixel (1, 0) from class 2 to class 1
    agr = Agreement(k)
    agr.update(logits_a, logits_b, target)
    r = agr.compute()
    assert r.pixel_agreement == pytest.approx(75.0)
    assert r.max_abs_error == pytest.approx(2.0)
    assert r.mean_abs_error == pytest.approx(2.0 / 12)
    assert r.reference is not None and r.reference.miou == pytest.approx(100.0)
    # B: class 1 IoU 1/2, class 2 IoU 0 -> mIoU (1 + 1/2 + 0)/3.
    assert r.other is not None and r.other.miou == pytest.approx(50.0)
    assert r.miou_delta == pytest.approx(-50.0)
    assert r.iou_delta == pytest.approx([0.0, -50.0, -100.0])
    json.dumps(r.to_dict(["x", "y", "z"]), allow_nan=False)


def test_agreement_with_label_outputs_has_no_logit_error():
    agr = Agreement(2)
    agr.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]]))
    r = agr.compute()
    assert r.pixel_agreement == pytest.approx(50.0)
    assert math.isnan(r.max_abs_error) and math.isnan(r.mean_abs_error)
    assert r.reference is None and math.isnan(r.miou_delta)
    # B scored against A: class 0 IoU 1/2, class 1 IoU 0.
    assert r.agreement_miou == pytest.approx(25.0)
    assert r.to_dict()["max_abs_error"] is None


def test_to_labels_argmaxes_logits_and_keeps_label_maps():
    logits = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])  # (1, 2, 1, 2): classes 1, 0
    assert to_labels(logits).tolist() == [[[1, 0]]]
    labels = to_labels(np.array([[[3, 1]]], np.int32))
    assert labels.dtype == torch.int64 and labels.tolist() == [[[3, 1]]]
    with pytest.raises(EdgesegError, match=r"ref: logits must be \(N, 3, H, W\), got \(1, 2, 1, 2\)"):
        to_labels(logits, 3, "ref")


def test_failure_figures_never_round_into_a_pass() -> None:
    from edgeseg.metrics import against

    assert against(99.997, 100.0) == "99.997"  # not "100.00"
    assert against(99.6, 99.5) == "99.60"
    assert against(0.50001, 0.5) == "0.50001"  # a drop just over its budget shows as over
    assert against(-0.35, 1.0) == "-0.35"


def test_vanished_and_appeared_classes_are_named() -> None:
    import numpy as np

    from edgeseg.metrics import Agreement

    ref = np.zeros((1, 10, 100), dtype=np.int64)
    ref[0, :5] = 1  # class 1 on half the pixels
    ref[0, 9, 99] = 2  # class 2 on 0.1 % of them: at the threshold
    cand = np.zeros_like(ref)
    cand[0, 0, 0] = 3  # class 3 on one pixel (0.1 %) that the reference never predicts
    agreement = Agreement(num_classes=4)
    agreement.update(ref, cand)
    m = agreement.compute()
    assert m.vanished == [1, 2] and m.appeared == [3]
    agreement.reset()
    agreement.update(ref, ref)
    assert agreement.compute().vanished == [] == agreement.compute().appeared


def test_labels_of_numpy_logits_match_torchs_argmax_ties_included() -> None:
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, size=(2, 5, 9, 11)).astype(np.float32)  # many ties
    fast = to_labels(logits)
    assert fast.dtype == torch.int64
    assert torch.equal(fast, torch.from_numpy(logits).argmax(1))
    assert torch.equal(fast, to_labels(torch.from_numpy(logits)))
