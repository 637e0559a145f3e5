"""Joint transforms keep image and mask aligned; recipe details (scale steps, fills, jitter)."""

import pytest
import torch

from edgeseg.data.transforms import (
    EvalTransform,
    TrainTransform,
    adjust_contrast,
    adjust_saturation,
    pad_to,
    resize,
    rotate,
)

# Distinct colours, one per label; the image "encodes" its labels so geometry can be checked.
COLORS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.9, 0.9, 0.1]])
IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _blocks(h: int = 24, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A label map of 4 big blocks and its colour-encoded image (3, H, W)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = (yy >= h // 2).long() * 2 + (xx >= w // 3).long()
    return COLORS[mask].permute(2, 0, 1).contiguous(), mask


def _decode(image: torch.Tensor) -> torch.Tensor:
    """Nearest encoding colour of every pixel."""
    d = ((image.permute(1, 2, 0)[..., None, :] - COLORS) ** 2).sum(-1)
    return d.argmin(-1)


def _uniform(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood holds a single value (away from label edges)."""
    m = mask.float()[None, None]
    hi = torch.nn.functional.max_pool2d(m, 3, 1, 1)[0, 0]
    lo = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)[0, 0]
    return hi == lo


def _interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels away from label edges and from the 255 fill."""
    return _uniform(mask) & (mask != 255)


def test_rotate_90_equals_rot90_for_image_and_mask():
    image, mask = _blocks(16, 16)
    img_r, mask_r = rotate(image, mask, 90.0)
    assert torch.equal(mask_r, torch.rot90(mask, 1, (0, 1)))
    torch.testing.assert_close(img_r, torch.rot90(image, 1, (1, 2)), atol=1e-5, rtol=0)


def test_rotation_fills_mask_255_and_image_0():
    image, mask = _blocks()
    img_r, mask_r = rotate(image, mask, 10.0)
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert mask_r[y, x] == 255
        assert torch.all(img_r[:, y, x] == 0)
    assert mask_r[12, 16] == mask[12, 16]  # the centre stays put
    inner = _interior(mask_r)
    assert inner.sum() > 0.5 * mask.numel()
    assert torch.equal(_decode(img_r)[inner], mask_r[inner])


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    image, mask = _blocks()
    t = TrainTransform(20, brightness=0, contrast=0, saturation=0, **IDENTITY)
    out_img, out_mask = t(image, mask, generator=torch.Generator().manual_seed(seed))
    assert out_img.shape == (3, 20, 20) and out_mask.shape == (20, 20)
    inner = _interior(out_mask)
    assert inner.any()
    assert torch.equal(_decode(out_img)[inner], out_mask[inner])
    # Well inside the region the mask marks "outside the source image", the image is black.
    outside = _uniform(out_mask) & (out_mask == 255)
    assert torch.all(out_img[:, outside] == 0)


def test_flips_move_labels_with_pixels():
    image, mask = _blocks()
    t = TrainTransform(None, scales=(1.0,), max_rotation=0, hflip_p=1.0, vflip_p=1.0,
                       brightness=0, contrast=0, saturation=0, **IDENTITY)  # fmt: skip
    out_img, out_mask = t(image, mask)
    assert torch.equal(out_mask, mask.flip(0).flip(1))
    assert torch.equal(out_img, image.flip(1).flip(2))


def test_scale_steps_are_the_recipe_steps():
    image, mask = _blocks(40, 40)
    t = TrainTransform(None, max_rotation=0, hflip_p=0, vflip_p=0, brightness=0, contrast=0, saturation=0)
    g = torch.Generator().manual_seed(0)
    sizes = {t(image, mask, generator=g)[1].shape for _ in range(40)}
    assert sizes == {(30, 30), (40, 40), (50, 50), (60, 60)}


def test_seeded_generator_reproduces_augmentation():
    image, mask = _blocks()
    t = TrainTransform(16)
    a = t(image, mask, generator=torch.Generator().manual_seed(3))
    b = t(image, mask, generator=torch.Generator().manual_seed(3))
    c = t(image, mask, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_crop_pads_image_0_and_mask_255():
    image, mask = _blocks(10, 12)
    img_p, mask_p = pad_to(image, mask, (16, 14))
    assert img_p.shape == (3, 16, 14)
    assert (
        torch.equal(mask_p[:10, :12], mask) and (mask_p[10:] == 255).all() and (mask_p[:, 12:] == 255).all()
    )
    assert (img_p[:, 10:] == 0).all() and (img_p[:, :, 12:] == 0).all()


def test_resize_mask_nearest_round_trip():
    _, mask = _blocks(12, 18)
    image = torch.rand(3, 12, 18)
    big_img, big = resize(image, mask, (36, 54))
    assert big_img.shape == (3, 36, 54) and big.dtype == torch.int64
    assert set(big.unique().tolist()) <= set(mask.unique().tolist())  # no invented labels
    assert torch.equal(resize(big_img, big, (12, 18))[1], mask)


def test_jitter_extremes():
    image = torch.rand(3, 5, 5)
    gray = adjust_saturation(image, 0.0)
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])
    flat = adjust_contrast(image, 0.0)
    assert torch.allclose(flat, flat.flatten()[0].expand_as(flat))


def test_eval_transform_resizes_and_normalises():
    image, mask = _blocks(24, 32)
    t = EvalTransform((12, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out_img, out_mask = t(image, mask)
    assert out_img.shape == (3, 12, 16) and out_mask.shape == (12, 16)
    assert torch.equal(out_mask, mask[1::2, 1::2])
    assert out_img.min() >= -1.0 and out_img.max() <= 1.0 and out_img.min() < 0
    assert torch.equal(EvalTransform()(image, mask)[1], mask)
