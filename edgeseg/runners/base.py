"""One runner interface for every backend (PyTorch, ONNX Runtime, TensorRT).

Validation, benchmarks, the :class:`~edgeseg.Segmenter` and the video pipeline take a runner,
never a backend. The base class owns the lifecycle and all input checks; a backend overrides only
the ``*_impl`` hooks (template method, as in Polygraphy's runners).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = ["BaseRunner", "TensorMeta"]


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one input or output. ``None`` or a string marks a dynamic dim."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]


class BaseRunner(ABC):
    """A backend that maps ``{input name: array}`` to ``{output name: array}``.

    Runners are context managers: ``with OnnxrtRunner(path) as r: r.infer({"images": x})``.

    Args:
        name: a label for reports, e.g. ``"onnxrt:model.int8.onnx"``.
    """

    backend: str = "base"

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_active = False
        self._inference_time: float | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def activate(self) -> BaseRunner:
        if self.is_active:
            raise EdgesegError(f"runner {self.name} is already active")
        self.activate_impl()
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> BaseRunner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # --- inference -------------------------------------------------------------------------
    def get_input_metadata(self) -> list[TensorMeta]:
        self._require_active()
        return self.get_input_metadata_impl()

    def infer(self, feed: dict[str, Any]) -> dict[str, Any]:
        """Run one inference; checks names, ranks, static dims and dtypes first.

        Returns:
            ``{output name: array}``; arrays are numpy on host backends and may be device tensors on
            GPU backends that were fed device tensors.
        """
        self._require_active()
        self._check_feed(feed)
        start = time.perf_counter()
        out = self.infer_impl(feed)
        self._inference_time = time.perf_counter() - start
        return out

    def last_inference_time(self) -> float | None:
        """Seconds the last :meth:`infer` spent in the backend (None before the first call)."""
        return self._inference_time

    # --- hooks -----------------------------------------------------------------------------
    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def get_input_metadata_impl(self) -> list[TensorMeta]: ...

    @abstractmethod
    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]: ...

    def deactivate_impl(self) -> None:  # noqa: B027 - optional hook; most backends free nothing
        """Release resources; the default has nothing to free."""

    # --- checks ----------------------------------------------------------------------------
    def _require_active(self) -> None:
        if not self.is_active:
            raise EdgesegError(f"runner {self.name} is not active; use it as a context manager")

    def _check_feed(self, feed: dict[str, Any]) -> None:
        metas = {m.name: m for m in self.get_input_metadata_impl()}
        missing, extra = sorted(set(metas) - set(feed)), sorted(set(feed) - set(metas))
        if missing or extra:
            raise EdgesegError(f"{self.name}: inputs expected {sorted(metas)}, got {sorted(feed)}")
        for name, arr in feed.items():
            if not hasattr(arr, "shape"):
                raise EdgesegError(f"{self.name}: input '{name}' must be an array, got {type(arr).__name__}")
            meta, shape = metas[name], tuple(arr.shape)
            if len(shape) != len(meta.shape):
                raise EdgesegError(f"{self.name}: input '{name}' must have rank {len(meta.shape)} "
                                   f"{meta.shape}, got shape {shape}")
            for got, want in zip(shape, meta.shape, strict=True):
                if isinstance(want, int) and got != want:
                    raise EdgesegError(f"{self.name}: input '{name}' must have shape {meta.shape}, "
                                       f"got {shape}")
            dtype = _as_numpy_dtype(getattr(arr, "dtype", None))
            if dtype != meta.dtype:
                raise EdgesegError(f"{self.name}: input '{name}' must be {meta.dtype}, got {arr.dtype}")


def _as_numpy_dtype(dtype: Any) -> np.dtype | None:
    """numpy dtype of a numpy / CuPy / PyTorch array's ``dtype`` (None when it has no numpy twin)."""
    # torch dtypes print as "torch.float32"; numpy and CuPy dtypes already are numpy dtypes.
    try:
        return np.dtype(str(dtype).removeprefix("torch.")) if dtype is not None else None
    except TypeError:
        return None
