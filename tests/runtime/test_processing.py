"""Pre/postprocessing kernels: the fast paths equal the plain computations they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.errors import EdgesegError
from edgeseg.runtime.processing import (
    Colorizer,
    Postprocessor,
    Preprocessor,
    default_palette,
    labels_from_logits,
    resize_logits,
    to_output,
    upsample_labels,
)


def _smooth_logits(n: int, k: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Scores that vary smoothly in space, like a network's: large uniform regions, some boundaries."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, k, max(2, h // 8), max(2, w // 8), generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * 4


@pytest.mark.parametrize(
    ("low", "size"),
    [((32, 48), (128, 256)), ((33, 17), (95, 61)), ((40, 40), (41, 39)), ((16, 16), (16, 16))],
)
def test_upsample_labels_equals_upsample_then_argmax(low: tuple[int, int], size: tuple[int, int]) -> None:
    logits = _smooth_logits(2, 5, *low)
    plain = labels_from_logits(resize_logits(logits, size))
    fast = upsample_labels(logits, size)
    assert fast.shape == (2, *size) and fast.dtype == torch.uint8
    assert (fast == plain).float().mean() > 0.9999  # equal up to float rounding in near-ties


def test_upsample_labels_on_noise_falls_back_and_agrees() -> None:
    logits = torch.randn(1, 7, 20, 30, generator=torch.Generator().manual_seed(1))  # boundaries everywhere
    assert torch.equal(upsample_labels(logits, (80, 90)), labels_from_logits(resize_logits(logits, (80, 90))))


def test_preprocessor_uint8_resize_close_to_float_eval_transform() -> None:
    frames = torch.randint(
        0, 256, (2, 120, 200, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    got = Preprocessor(mean, std, (48, 64))(frames)
    x = frames.permute(0, 3, 1, 2).float() / 255  # what EvalTransform does: float resize, then normalise
    x = F.interpolate(x, size=(48, 64), mode="bilinear", align_corners=False, antialias=True)
    want = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert got.shape == (2, 3, 48, 64) and got.dtype == torch.float32 and got.is_contiguous()
    # uint8 rounding of resized pixels: under one grey level, i.e. < 1/255/std in normalised units.
    assert (got - want).abs().max() < 1.0 / 255 / min(std)


def test_default_palette_distinct_and_colorizer_orders() -> None:
    palette = default_palette(21)
    assert palette[0] == [0, 0, 0] and palette[1] == [128, 0, 0] and len({tuple(c) for c in palette}) == 21
    colorizer = Colorizer(palette)
    labels = torch.tensor([[0, 1], [2, 3]], dtype=torch.uint8)
    rgb, bgr = colorizer.colorize(labels), colorizer.colorize(labels, "bgr")
    assert rgb[0, 1].tolist() == [128, 0, 0] and bgr[0, 1].tolist() == [0, 0, 128]


def test_preprocessor_same_size_and_bgr_equal_plain_normalisation() -> None:
    frames = torch.randint(
        0, 256, (2, 33, 47, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4)
    )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pre = Preprocessor(mean, std, (33, 47))
    want = (frames.permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    got = pre(frames)
    assert got.is_contiguous() and torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(pre(frames.flip(-1), "bgr"), want, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.3, 0.5, 0.77, 1.0])
def test_overlay_rounds_the_float_blend(alpha: float) -> None:
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (2, 19, 23, 3), dtype=torch.uint8, generator=g)
    frames[0, 0, :3] = torch.tensor(
        [[0, 0, 0], [255, 255, 255], [255, 0, 255]], dtype=torch.uint8
    )  # extremes
    labels = torch.randint(0, 30, (2, 19, 23), dtype=torch.uint8, generator=g)  # classes past the palette too
    colorizer = Colorizer(default_palette(21) + [[255, 255, 255]])
    for color in ("rgb", "bgr"):
        colours = colorizer.colorize(labels, color).float()
        want = frames.float() * (1 - alpha) + colours * alpha
        got = colorizer.overlay(frames, labels, alpha, color)
        assert got.dtype == torch.uint8 and got.shape == frames.shape
        # Rounding (0.5) plus alpha's fixed-point step (2^-17 * 255): never a whole grey level off.
        assert (got.float() - want).abs().max() <= 0.51


def test_postprocessor_maps_scores_and_labels_to_frame_size() -> None:
    post = Postprocessor(4, Colorizer(default_palette(4)), name="net")
    raw = _smooth_logits(2, 4, 8, 12).half()  # an FP16 engine's output
    frames = torch.randint(0, 256, (2, 30, 40, 3), dtype=torch.uint8)
    maps = post(raw, frames, logits=True, probs=True)
    want = labels_from_logits(resize_logits(raw, (30, 40)))
    assert torch.equal(maps["mask"], want)
    assert maps["logits"].dtype == torch.float32 and maps["logits"].shape == (2, 4, 30, 40)
    assert torch.allclose(maps["probs"].sum(1), torch.ones(2, 30, 40))
    assert maps["overlay"] is None
    plain = post(raw, frames, overlay=True, alpha=1.0)
    assert plain["logits"] is None and plain["probs"] is None
    assert torch.equal(plain["overlay"], Colorizer(default_palette(4)).colorize(plain["mask"]))
    labels = post(want[:, ::3, ::4], frames)["mask"]  # an argmax graph's (N, h, w) output
    assert labels.shape == (2, 30, 40) and labels.dtype == torch.uint8
    with pytest.raises(EdgesegError, match="net: model outputs 5 classes, its card says 4"):
        post(_smooth_logits(1, 5, 8, 8), frames[:1])
    with pytest.raises(EdgesegError, match="outputs class labels"):
        post(want, frames, probs=True)
    with pytest.raises(EdgesegError, match=r"net: unexpected output shape \(2, 4\)"):
        post(torch.zeros(2, 4), frames)


def test_to_output_converts_to_host_numpy_only_when_asked() -> None:
    t = torch.arange(6).view(2, 3)
    assert to_output(t, "torch") is t and to_output(None, "numpy") is None
    host = to_output(t, "numpy")
    assert isinstance(host, np.ndarray) and host.tolist() == t.tolist()
