"""Joint image/mask transforms on torch tensors: the DBMSNet training recipe and evaluation resize.

Inputs are an image float32 (3, H, W) with values in 0..1 and a mask int64 (H, W) of class ids
(255 = ignore). Geometric operations move both with the same sampling grid (image bilinear, mask
nearest) so labels stay on their pixels; photometric ones touch only the image. Normalisation
(``(x - mean) / std`` on 0..1 RGB) is always last.

Training recipe (DBMSNet paper, see DESIGN §3.4): random scale 0.75–1.5 in steps of 0.25,
rotation uniform in ±10° (exposed corners: image 0, mask 255), horizontal and vertical flips with
p = 0.5, random crop (padding image 0 / mask 255 on the bottom/right when the scaled image is
smaller than the crop), brightness / contrast / saturation jitter of 0.4, normalisation.

All randomness is drawn from an optional ``torch.Generator``, so a seeded generator reproduces
the exact same augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from edgeseg.checkpoint import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IGNORE_INDEX",
    "TrainTransform",
    "EvalTransform",
    "resize",
    "rotate",
    "hflip",
    "vflip",
    "pad_to",
    "crop",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "normalize",
]

# Mask value of pixels without a label: the transforms fill exposed borders with it, the loss and
# the metrics skip it. Defined here, the lowest module of edgeseg.data, so every reader can share it.
IGNORE_INDEX = 255

Pair = tuple[torch.Tensor, torch.Tensor]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize(image: torch.Tensor, mask: torch.Tensor, size: int | Sequence[int]) -> Pair:
    """Resize to ``size`` (H, W): image bilinear (antialiased when shrinking), mask nearest.

    ``nearest-exact`` samples each output pixel at the input pixel under its centre, so a mask
    resized by an integer factor and back keeps every label where it was.
    """
    h, w = _size2(size)
    if (h, w) == tuple(image.shape[-2:]):
        return image, mask
    img = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    msk = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0]
    return img, msk.to(mask.dtype)


def hflip(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    """Mirror left-right."""
    return image.flip(-1), mask.flip(-1)


def vflip(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    """Mirror top-bottom."""
    return image.flip(-2), mask.flip(-2)


def rotate(image: torch.Tensor, mask: torch.Tensor, degrees: float, fill_mask: int = IGNORE_INDEX) -> Pair:
    """Rotate about the image centre by ``degrees`` (counter-clockwise on screen), same size.

    Pixels that come from outside the input are 0 in the image and ``fill_mask`` in the mask.
    Image bilinear, mask nearest, both from one sampling grid.
    """
    if degrees == 0:
        return image, mask
    h, w = image.shape[-2:]
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    # affine_grid works in [-1, 1] coordinates per axis; the h/w factors keep the rotation rigid
    # on non-square images. The matrix maps output to input coordinates (the inverse rotation).
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    img = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    # Shift labels by +1 so that the zeros grid_sample pads with mark "outside" unambiguously.
    shifted = (mask + 1).to(torch.float32)[None, None]
    msk = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
    msk = msk.round().to(mask.dtype)
    return img, torch.where(msk == 0, torch.full_like(msk, fill_mask), msk - 1)


def pad_to(
    image: torch.Tensor, mask: torch.Tensor, size: int | Sequence[int], fill_mask: int = IGNORE_INDEX
) -> Pair:
    """Pad bottom/right to at least ``size`` (H, W): image with 0, mask with ``fill_mask``."""
    h, w = _size2(size)
    ph, pw = max(h - image.shape[-2], 0), max(w - image.shape[-1], 0)
    if ph == 0 and pw == 0:
        return image, mask
    return F.pad(image, (0, pw, 0, ph), value=0.0), F.pad(mask, (0, pw, 0, ph), value=fill_mask)


def crop(image: torch.Tensor, mask: torch.Tensor, top: int, left: int, size: int | Sequence[int]) -> Pair:
    """Cut the (H, W) = ``size`` window whose top-left corner is (``top``, ``left``)."""
    h, w = _size2(size)
    return image[:, top : top + h, left : left + w], mask[top : top + h, left : left + w]


def _gray(image: torch.Tensor) -> torch.Tensor:
    # ITU-R BT.601 luma weights, the usual grayscale for colour jitter.
    r, g, b = image[0], image[1], image[2]
    return (0.299 * r + 0.587 * g + 0.114 * b)[None]


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale intensities by ``factor`` (1 = unchanged), clamped to 0..1."""
    return (image * factor).clamp_(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the image's mean gray level: 0 = flat gray, 1 = unchanged."""
    mean = _gray(image).mean()
    return (mean + factor * (image - mean)).clamp_(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the per-pixel grayscale: 0 = grayscale, 1 = unchanged."""
    gray = _gray(image)
    return (gray + factor * (image - gray)).clamp_(0.0, 1.0)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(image - mean) / std`` per channel, on 0..1 RGB values."""
    m = torch.tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - m) / s


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


class TrainTransform:
    """The DBMSNet training augmentation; see the module docstring for the order of steps.

    Args:
        crop_size: output (H, W) (an int means square). ``None`` keeps the augmented size (only
            useful with batch size 1).
        scales: scale factors drawn uniformly. Defaults to (0.75, 1.0, 1.25, 1.5).
        max_rotation: rotation angle drawn uniformly in ±max_rotation degrees; 0 disables.
            Defaults to 10.
        hflip_p: probability of a horizontal flip. Defaults to 0.5.
        vflip_p: probability of a vertical flip. Defaults to 0.5.
        brightness: brightness factor drawn in [1 - b, 1 + b]. Defaults to 0.4.
        contrast: contrast factor drawn in [1 - c, 1 + c]. Defaults to 0.4.
        saturation: saturation factor drawn in [1 - s, 1 + s]. Defaults to 0.4.
        mean: normalisation mean on 0..1 RGB. Defaults to ImageNet's.
        std: normalisation std on 0..1 RGB. Defaults to ImageNet's.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] | None,
        *,
        scales: Sequence[float] = (0.75, 1.0, 1.25, 1.5),
        max_rotation: float = 10.0,
        hflip_p: float = 0.5,
        vflip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales}")
        self.crop_size = None if crop_size is None else _size2(crop_size)
        self.scales = tuple(scales)
        self.max_rotation = max_rotation
        self.hflip_p, self.vflip_p = hflip_p, vflip_p
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        """Augment one sample; all draws come from ``generator`` (global RNG when ``None``)."""
        g = generator
        factor = self.scales[int(torch.randint(len(self.scales), (), generator=g))]
        h, w = image.shape[-2:]
        image, mask = resize(image, mask, (max(1, round(h * factor)), max(1, round(w * factor))))
        if self.max_rotation:
            image, mask = rotate(image, mask, _uniform(-self.max_rotation, self.max_rotation, g))
        if float(torch.rand((), generator=g)) < self.hflip_p:
            image, mask = hflip(image, mask)
        if float(torch.rand((), generator=g)) < self.vflip_p:
            image, mask = vflip(image, mask)
        if self.crop_size is not None:
            image, mask = pad_to(image, mask, self.crop_size)
            ch, cw = self.crop_size
            top = int(torch.randint(image.shape[-2] - ch + 1, (), generator=g))
            left = int(torch.randint(image.shape[-1] - cw + 1, (), generator=g))
            image, mask = crop(image, mask, top, left, self.crop_size)
        # Jitter after the crop: same result per pixel except contrast's mean, and far cheaper.
        if self.brightness:
            image = adjust_brightness(image, _uniform(1 - self.brightness, 1 + self.brightness, g))
        if self.contrast:
            image = adjust_contrast(image, _uniform(1 - self.contrast, 1 + self.contrast, g))
        if self.saturation:
            image = adjust_saturation(image, _uniform(1 - self.saturation, 1 + self.saturation, g))
        return normalize(image, self.mean, self.std), mask

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, scales={self.scales}, "
            f"max_rotation={self.max_rotation}, flips=({self.hflip_p}, {self.vflip_p}), "
            f"jitter=({self.brightness}, {self.contrast}, {self.saturation}))"
        )


class EvalTransform:
    """Evaluation preprocessing: optional fixed-size resize, then normalisation.

    Args:
        size: output (H, W) (an int means square); image bilinear, mask nearest. ``None`` keeps
            the original size. Defaults to ``None``.
        mean: normalisation mean on 0..1 RGB. Defaults to ImageNet's.
        std: normalisation std on 0..1 RGB. Defaults to ImageNet's.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.size = None if size is None else _size2(size)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> Pair:
        """Resize (if a size was given) and normalise; ``generator`` is accepted and unused."""
        if self.size is not None:
            image, mask = resize(image, mask, self.size)
        return normalize(image, self.mean, self.std), mask

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, mean={self.mean}, std={self.std})"
