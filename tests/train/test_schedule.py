import math

import pytest
import torch

from edgeseg.train.schedule import PolyLR, poly_lr


def _lrs(max_iter: int, base: float = 0.1, power: float = 0.9) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = PolyLR(opt, max_iter, power)
    out = []
    for _ in range(max_iter + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_poly_values_follow_closed_form_and_reach_zero():
    lrs = _lrs(10, base=0.1)
    assert lrs[0] == 0.1
    for t in (1, 5, 9):
        assert lrs[t] == pytest.approx(0.1 * (1 - t / 10) ** 0.9, rel=1e-12)
    assert lrs[5] == pytest.approx(0.1 * 0.5**0.9)  # 0.05359...
    assert lrs[10] == 0.0
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_poly_clamps_past_max_iter_and_power_is_used():
    assert poly_lr(1.0, 12, 10) == 0.0
    assert poly_lr(1.0, 5, 10, power=1.0) == pytest.approx(0.5)
    assert poly_lr(1.0, 5, 10, power=2.0) == pytest.approx(0.25)


def test_poly_state_dict_resumes_bit_identically():
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=0.3)
    sched = PolyLR(opt, 7)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    sched2 = PolyLR(opt2, 7)
    sched2.load_state_dict(state)
    for _ in range(3):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == 0.3 * (1 - 6 / 7) ** 0.9


def test_poly_rejects_bad_max_iter():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError):
        PolyLR(opt, 0)
    assert math.isfinite(poly_lr(0.1, 0, 1))
