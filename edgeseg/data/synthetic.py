"""A seeded synthetic segmentation set: coloured shapes of many sizes on textured backgrounds.

It is the training data of the shipped demo model and of the tests, so it has to be learnable by a
small DBMSNet in minutes on a CPU while still exercising what the papers care about:

* 7 classes: background + disc, square, triangle, ring, bar, cross. A class is given by its shape
  *and* a class-typical hue (six hues 60° apart, each jittered ±30° so neighbouring ranges touch,
  with random saturation, brightness and a shading gradient): colour narrows a pixel down to about
  two classes and shape decides. Grayish "distractor" shapes drawn first belong to the background,
  so shape alone is not enough either.
* Object diameters log-uniform from 6 px to half the image side, so small objects are frequent
  (the median is ~20 px at 128²); 3–8 objects per image, drawn in order so later objects occlude
  earlier ones and rings show what lies beneath their hole; objects may leave the frame.
* Backgrounds: low-saturation colour with smooth low-frequency texture and 0–3 distractor shapes
  (saturation ≤ 0.2); Gaussian pixel noise on top.

Default size 128×128 (the trade-off): a 6 px object still spans one or two cells of DBMSNet's
stride-4 branch, and a CPU training step stays cheap. 160×160 would give small objects ~1.5× more
pixels but cost ~1.6× the compute per image, i.e. fewer iterations in the demo's 30-minute CPU
training budget. Pass ``size=`` to change it.

Every sample is a pure function of ``(seed, split, index, size)``: images are generated on the fly
(a few ms each at 128², far below a training step), nothing is cached, and the ``root`` of a
``synthetic:`` spec is not used. Splits draw from disjoint seed streams. :func:`write_synthetic`
writes a set to disk in the ``folder`` layout (e.g. the demo calibration set), byte-identical to
what the dataset yields in memory.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgeseg._io import atomic_write, write_json
from edgeseg.data._base import SegmentationDataset, Transform, to_tensors
from edgeseg.errors import EdgesegError

__all__ = [
    "SyntheticShapes",
    "render_sample",
    "write_synthetic",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_PALETTE",
    "SPLIT_STREAMS",
    "DEFAULT_NUM_IMAGES",
]

GENERATOR_VERSION = "edgeseg.synthetic/1"
SYNTHETIC_CLASSES = ["background", "disc", "square", "triangle", "ring", "bar", "cross"]
# Overlay colours: black background, then each shape's typical hue at full saturation.
SYNTHETIC_PALETTE = [[0, 0, 0]] + [
    [round(255 * c) for c in colorsys.hsv_to_rgb(k / 6, 1.0, 1.0)] for k in range(len(SYNTHETIC_CLASSES) - 1)
]
# Each split has its own seed stream: SeedSequence([seed, stream, index]) never collides across splits.
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2, "calib": 3}
DEFAULT_NUM_IMAGES = {"train": 2000, "val": 200, "test": 200, "calib": 64}

_MIN_DIAMETER = 6.0
_HUE_JITTER = 30 / 360
_NOISE_STD = 0.05


def _disc(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    return u * u + v * v <= r * r


def _square(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    # Half side 0.75 r: about the area of the disc of the same nominal diameter.
    return np.maximum(np.abs(u), np.abs(v)) <= 0.75 * r


def _triangle(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    # Equilateral with circumradius r: inside the three edges, each at distance r/2 from the centre.
    inside = np.ones(u.shape, dtype=bool)
    for k in range(3):
        a = math.pi / 2 + 2 * math.pi * k / 3
        inside &= u * math.cos(a) + v * math.sin(a) <= r / 2
    return inside


def _ring(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    thickness = max(2.0, r * rng.uniform(0.3, 0.45))
    d2 = u * u + v * v
    return (d2 <= r * r) & (d2 >= (r - thickness) ** 2)


def _bar(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    half_width = max(1.0, r * rng.uniform(0.12, 0.25))
    return (np.abs(u) <= r) & (np.abs(v) <= half_width)


def _cross(u: np.ndarray, v: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    arm, half_width = 0.85 * r, max(1.0, 0.22 * r)
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= half_width)) | ((av <= arm) & (au <= half_width))


_SHAPES: list[Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]] = [
    _disc,
    _square,
    _triangle,
    _ring,
    _bar,
    _cross,
]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.85)))
    cells = int(rng.integers(3, 9))
    # Smooth texture: a coarse random grid upsampled bilinearly; mostly luminance, a little colour.
    coarse = torch.from_numpy(rng.normal(0.0, 1.0, size=(1, 4, cells, cells)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
    texture = 0.12 * smooth[0][..., None] + 0.04 * np.moveaxis(smooth[1:], 0, -1)
    return base[None, None, :] + texture


def render_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (128, 128)
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic sample.

    Args:
        seed: base seed of the set.
        split: a key of :data:`SPLIT_STREAMS`; each split has a disjoint seed stream.
        index: sample index within the split.
        size: (H, W). Defaults to (128, 128).

    Returns:
        ``(image uint8 (H, W, 3), mask uint8 (H, W))`` with class ids ``0 .. 6``.
    """
    if split not in SPLIT_STREAMS:
        raise EdgesegError(f"synthetic split '{split}': expected one of {', '.join(SPLIT_STREAMS)}")
    h, w = size
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_STREAMS[split], index]))
    image = _background(rng, h, w)
    mask = np.zeros((h, w), dtype=np.uint8)
    max_diameter = max(_MIN_DIAMETER, min(h, w) / 2)
    num_distractors, num_objects = int(rng.integers(0, 4)), int(rng.integers(3, 9))
    for k in range(num_distractors + num_objects):
        distractor = k < num_distractors
        shape = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        r = math.exp(rng.uniform(math.log(_MIN_DIAMETER), math.log(max_diameter))) / 2
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, 2 * math.pi)
        # Only the object's bounding square is evaluated: it keeps rendering to a few ms per image.
        y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
        dx, dy = xx - cx, yy - cy
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = -dx * math.sin(angle) + dy * math.cos(angle)
        inside = _SHAPES[shape - 1](u, v, r, rng)
        if distractor:
            color = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.9)))
        else:
            hue = ((shape - 1) / 6 + rng.uniform(-_HUE_JITTER, _HUE_JITTER)) % 1.0
            color = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0)))
        gu, gv = rng.uniform(-0.15, 0.15, size=2)
        shading = 1.0 + (gu * u + gv * v) / r  # a lighting gradient across the object
        patch = image[y0:y1, x0:x1]
        patch[inside] = color[None, :] * shading[inside][:, None]
        mask[y0:y1, x0:x1][inside] = 0 if distractor else shape
    image = image + rng.normal(0.0, _NOISE_STD, size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8), mask


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise EdgesegError(f"synthetic image size {h}x{w} is too small (minimum 16x16)")
    return h, w


class SyntheticShapes(SegmentationDataset):
    """The synthetic shapes set, generated on the fly; see the module docstring.

    Args:
        split: ``train``, ``val``, ``test`` or ``calib``. Defaults to ``"train"``.
        size: image (H, W) or a side length. Defaults to 128.
        num_images: number of samples. Defaults to :data:`DEFAULT_NUM_IMAGES` of the split.
        data_seed: base seed of the generated content (not of augmentation). Defaults to 0.
        transform: see :class:`~edgeseg.data._base.SegmentationDataset`.
        seed: augmentation seed, see :class:`~edgeseg.data._base.SegmentationDataset`.
    """

    class_names = SYNTHETIC_CLASSES
    palette = SYNTHETIC_PALETTE

    def __init__(
        self,
        split: str | None = None,
        *,
        size: int | tuple[int, int] = 128,
        num_images: int | None = None,
        data_seed: int = 0,
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.split = split or "train"
        if self.split not in SPLIT_STREAMS:
            raise EdgesegError(f"synthetic split '{self.split}': expected one of {', '.join(SPLIT_STREAMS)}")
        self.size = _size2(size)
        self.num_images = DEFAULT_NUM_IMAGES[self.split] if num_images is None else int(num_images)
        if self.num_images < 1:
            raise EdgesegError(f"synthetic split '{self.split}' is empty (num_images={self.num_images})")
        self.data_seed = data_seed

    def __len__(self) -> int:
        return self.num_images

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as uint8 arrays: image (H, W, 3), mask (H, W)."""
        return render_sample(self.data_seed, self.split, index, self.size)

    def read_sample(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(*self.render(index))


def write_synthetic(
    root: str | Path,
    num_images: int,
    *,
    size: int | tuple[int, int] = 128,
    split: str = "calib",
    data_seed: int = 0,
) -> Path:
    """Write a synthetic set to disk in the ``folder`` layout, readable with ``folder:<root>``.

    Writes ``images/<i:05d>.png``, ``masks/<i:05d>.png`` (palette PNGs of class ids),
    ``classes.txt`` (``name R G B`` per class) and ``synthetic.json`` (the generator parameters,
    enough to regenerate the set). Every file is written atomically.

    Args:
        root: output folder (created if missing).
        num_images: number of samples.
        size: image (H, W) or side length. Defaults to 128.
        split: which seed stream to draw from. Defaults to ``"calib"``, disjoint from train/val.
        data_seed: base seed. Defaults to 0.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    dataset = SyntheticShapes(split, size=size, num_images=num_images, data_seed=data_seed)
    root = Path(root)
    flat_palette = [c for rgb in SYNTHETIC_PALETTE for c in rgb]
    for i in range(num_images):
        image, mask = dataset.render(i)
        with atomic_write(root / "images" / f"{i:05d}.png") as f:
            Image.fromarray(image).save(f, format="PNG")
        label = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
        label.putpalette(flat_palette)
        with atomic_write(root / "masks" / f"{i:05d}.png") as f:
            label.save(f, format="PNG")
    with atomic_write(root / "classes.txt", "w") as f:
        for name, (r, g, b) in zip(SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, strict=True):
            f.write(f"{name} {r} {g} {b}\n")
    write_json(
        root / "synthetic.json",
        {
            "generator": GENERATOR_VERSION,
            "split": split,
            "data_seed": data_seed,
            "size": list(dataset.size),
            "num_images": num_images,
            "classes": SYNTHETIC_CLASSES,
        },
    )
    return root
