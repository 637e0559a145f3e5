"""A tiny dataset and model card shared by the training tests (CPU, milliseconds per step).

The network is the suite's one :class:`tiny_nets.TinySegNet`, at stride 1 here: the masks are
random per pixel.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from edgeseg.checkpoint import ModelCard


class TinySegSet(Dataset):
    """Images whose pixel colour encodes the class (learnable in a few steps), optional random flip.

    The flip draws from torch's global RNG, as real augmentations do, so resume tests also check
    that RNG state is restored.
    """

    def __init__(self, n: int = 8, size: tuple[int, int] = (8, 8), num_classes: int = 3, *, seed: int = 0,
                 flip: bool = False, ignore_border: bool = False) -> None:
        g = torch.Generator().manual_seed(seed)
        self.masks = torch.randint(0, num_classes, (n, *size), generator=g)
        # Class colours are the same for every seed, so a train and a val set agree on them.
        colours = torch.randn(num_classes, 3, generator=torch.Generator().manual_seed(1234))
        self.images = colours[self.masks].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, 3, *size, generator=g)
        if ignore_border:
            self.masks[:, 0, :] = 255
        self.flip = flip
        self.num_classes = num_classes
        self.class_names = [f"c{i}" for i in range(num_classes)]
        self.palette = [[40 * i, 255 - 40 * i, 0] for i in range(num_classes)]

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[i], self.masks[i]
        if self.flip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        return image.clone(), mask.clone()


def tiny_card(num_classes: int = 3) -> ModelCard:
    names = [f"c{i}" for i in range(num_classes)]
    return ModelCard(preset="tiny", num_classes=num_classes, class_names=names, input_size=(8, 8))
