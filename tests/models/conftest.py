"""Model-zoo tests run torch on one thread.

The models are tiny at the test sizes, and on a shared 2-core machine OpenMP's worker threads wait on
each other far longer than they compute (measured ~30× slower per step than one thread under load).
The previous setting is restored, so tests of other packages in the same worker are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
