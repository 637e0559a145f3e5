import pytest
import torch
import torch.nn.functional as F

from edgeseg.train.loss import segmentation_loss


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(seed), requires_grad=True)


def test_loss_is_main_ce_plus_weighted_aux():
    target = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(0))
    target[0, 0] = 255
    out, aux1, aux2 = _logits(1), _logits(2), _logits(3)
    total, parts = segmentation_loss({"out": out, "aux1": aux1, "aux2": aux2}, target,
                                     {"aux1": 0.4, "aux2": 1.0})
    ce = [F.cross_entropy(t, target, ignore_index=255) for t in (out, aux1, aux2)]
    assert total.item() == pytest.approx((ce[0] + 0.4 * ce[1] + 1.0 * ce[2]).item(), rel=1e-6)
    assert parts == pytest.approx({"out": ce[0].item(), "aux1": ce[1].item(), "aux2": ce[2].item()}, rel=1e-6)
    total.backward()
    assert aux1.grad is not None and aux1.grad.abs().sum() > 0


def test_unweighted_aux_outputs_do_not_contribute_and_tensor_output_works():
    target = torch.randint(0, 4, (2, 5, 6))
    out = _logits(4)
    total, parts = segmentation_loss({"out": out, "extra": _logits(5)}, target, {})
    bare, _ = segmentation_loss(out, target)
    assert total.item() == bare.item() == pytest.approx(F.cross_entropy(out, target).item(), rel=1e-6)
    assert set(parts) == {"out"}


def test_ignore_index_pixels_do_not_matter_and_all_void_gives_zero_not_nan():
    target = torch.full((2, 5, 6), 255)
    out = _logits(6)
    total, _ = segmentation_loss(out, target)
    assert total.item() == 0.0
    target[:, :2] = 1
    changed = out.detach().clone()
    changed[:, :, 2:] += 100.0  # logits under ignored pixels
    a, _ = segmentation_loss(out, target)
    b, _ = segmentation_loss(changed, target)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_missing_keys_are_errors():
    with pytest.raises(KeyError, match="out"):
        segmentation_loss({"aux": _logits(0)}, torch.zeros(2, 5, 6, dtype=torch.long))
    with pytest.raises(KeyError, match="aux"):
        segmentation_loss({"out": _logits(0)}, torch.zeros(2, 5, 6, dtype=torch.long), {"aux": 0.4})
