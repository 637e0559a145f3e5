"""Data order that can be resumed mid-epoch.

:class:`torch.utils.data.DistributedSampler` already makes each epoch's order a pure function of
``(seed, epoch)``; this subclass adds a start offset so that a resumed run skips the samples the
interrupted one had consumed, without loading them. The same sampler serves single-process runs
(``num_replicas=1``), so one code path decides the data order everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler

__all__ = ["ResumableSampler"]


class ResumableSampler(DistributedSampler):  # type: ignore[type-arg]
    """A :class:`~torch.utils.data.DistributedSampler` that can start part-way into an epoch.

    Args:
        dataset: the dataset to sample from (only its length is used).
        num_replicas: number of processes. Defaults to 1.
        rank: this process's rank. Defaults to 0.
        seed: base seed of the per-epoch permutation.
        shuffle: shuffle each epoch. Defaults to True.

    The tail of the permutation that does not divide evenly between processes is dropped
    (``drop_last``), so every process sees the same number of samples and no sample twice.
    """

    def __init__(self, dataset: Sized, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,  # type: ignore[arg-type]
                         seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this process's share of the current epoch."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start must be in [0, {self.num_samples}], got {start}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start
