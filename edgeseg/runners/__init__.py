"""Backends behind one interface: see :class:`edgeseg.runners.base.BaseRunner`."""

from edgeseg.runners.base import BaseRunner, TensorMeta

__all__ = ["BaseRunner", "TensorMeta"]
