"""Sizes of the small DBMSNet the export tests use, and the suite's tiny network (from ``tiny_nets``)."""

from __future__ import annotations

from tiny_nets import TinySegNet

__all__ = ["DBMS_CLASSES", "DBMS_SIZE", "TinySegNet"]

#: Input (H, W) and classes of the small DBMSNet the export tests use.
DBMS_SIZE = (64, 64)
DBMS_CLASSES = 5
