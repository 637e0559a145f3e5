"""``FeatureInfo``: what a backbone's intermediate features look like, so decoders can size themselves."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeatureInfo", "StageInfo"]


@dataclass(frozen=True)
class StageInfo:
    """One intermediate feature map of a backbone.

    Args:
        name: the stage's name in the papers (``pool3`` for VGG, ``De2`` for ResNet).
        num_chs: number of channels.
        reduction: input size / feature size (the stage's output stride).
        module: dotted name of the submodule that produces it (``layer2``, ``features.16``).
    """

    name: str
    num_chs: int
    reduction: int
    module: str


class FeatureInfo(tuple[StageInfo, ...]):
    """The stages of a backbone, shallow to deep (timm's ``feature_info``, typed)."""

    def channels(self) -> list[int]:
        """Channels of every stage."""
        return [s.num_chs for s in self]

    def reductions(self) -> list[int]:
        """Output stride of every stage."""
        return [s.reduction for s in self]

    def module_names(self) -> list[str]:
        """Dotted submodule name of every stage."""
        return [s.module for s in self]

    def names(self) -> list[str]:
        """Paper names of every stage."""
        return [s.name for s in self]

    def find(self, name: str) -> int:
        """Position of the stage called ``name`` (e.g. ``"De3"``).

        Raises:
            KeyError: no stage has that name.
        """
        for i, s in enumerate(self):
            if s.name == name:
                return i
        raise KeyError(f"no stage named {name!r}; stages are {self.names()}")
