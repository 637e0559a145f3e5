"""DataLoaders whose bad samples reach the user as one line naming the file.

Datasets raise :class:`~edgeseg.errors.EdgesegError` naming the bad file. Raised inside a DataLoader
worker process (``--workers`` > 0), torch re-raises it in the main process with the worker's whole
traceback pasted into the message. Here a sample's EdgesegError travels back to the main process as
data instead, and :func:`checked` raises it there with its own message. Other exceptions (bugs)
keep torch's treatment and their worker traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, default_collate

from edgeseg.errors import EdgesegError

__all__ = ["make_loader", "checked"]


class _SampleError:
    """A sample's EdgesegError message, picklable across the worker → main process queue."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _ReportingDataset(Dataset):
    """Returns a sample's EdgesegError as a :class:`_SampleError` instead of raising it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except EdgesegError as e:
            return _SampleError(str(e))


def _collate(batch: list[Any]) -> Any:
    for item in batch:
        if isinstance(item, _SampleError):
            return item  # the batch is lost anyway: hand the first error on
    return default_collate(batch)


def make_loader(dataset: Dataset, **kwargs: Any) -> DataLoader:
    """A ``DataLoader(dataset, **kwargs)`` whose sample errors :func:`checked` re-raises cleanly.

    ``dataset`` is wrapped, not copied: changes to it (``set_epoch``) reach the workers each time
    the loader starts them.
    """
    return DataLoader(_ReportingDataset(dataset), collate_fn=_collate, **kwargs)


def checked(loader: Iterable[Any]) -> Iterator[Any]:
    """Iterate a :func:`make_loader` loader, raising a sample's EdgesegError with its own message.

    Raises:
        EdgesegError: a sample could not be read (the message names the file).
    """
    for batch in loader:
        if isinstance(batch, _SampleError):
            raise EdgesegError(batch.message)
        yield batch
