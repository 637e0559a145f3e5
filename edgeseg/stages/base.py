"""The unit of a build: a :class:`Stage` declares what it reads and writes, and how it runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgeseg.stages.context import BuildContext

__all__ = ["Outcome", "Stage"]


@dataclass
class Outcome:
    """What a stage's run produced.

    Args:
        outputs: role → file written (recorded with its sha256 in ``build.json``).
        results: anything else worth recording (node counts, metrics, ...).
        detail: one line for the summary table.
        status: ``"done"``, or ``"skipped"`` for a step that cannot run here (with ``reason``).
        reason: why it was skipped.
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    status: str = "done"
    reason: str = ""


class Stage(ABC):
    """One build step over the build folder.

    Subclasses set :attr:`name`, :attr:`reads` and :attr:`writes` (build-folder file names, for the
    reader and for ``docs/design.md``) and implement :meth:`run` and :meth:`reuse`. The executor
    asks :meth:`applies`, then skips the stage when :meth:`fresh` says its recorded inputs, options
    and outputs all still match, and otherwise runs it and records the outcome.
    """

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: A stop signal waits until the stage is done and recorded. For stages whose work is one call
    #: into native code (torch.export, onnxsim, TensorRT's builder), which a signal cannot cut short
    #: anyway (:mod:`edgeseg.stopping`): finishing them keeps the work for the resumed build.
    finishes_on_stop: ClassVar[bool] = False

    def key(self, ctx: BuildContext) -> str:
        """Its entry in ``build.json`` (the name, unless one build folder keeps several)."""
        return self.name

    def applies(self, ctx: BuildContext) -> bool:
        """Whether this build needs the stage at all."""
        return True

    def inputs(self, ctx: BuildContext) -> dict[str, Path]:
        """Files whose content decides the stage's outputs (hashed into ``build.json``)."""
        return {}

    def options(self, ctx: BuildContext) -> dict[str, Any]:
        """Options that decide the stage's outputs (recorded; a change re-runs the stage)."""
        return {}

    def artifacts(self, ctx: BuildContext) -> list[Path]:
        """The deployable files it writes: removed when the stage fails or is interrupted."""
        return []

    def fresh(self, ctx: BuildContext, inputs: dict[str, Path], options: dict[str, Any]) -> bool:
        return ctx.record.is_fresh(self.key(ctx), inputs, options)

    @abstractmethod
    def run(self, ctx: BuildContext) -> Outcome:
        """Do the work; set what later stages need on ``ctx``."""

    @abstractmethod
    def reuse(self, ctx: BuildContext) -> str:
        """Restore what later stages need from the stage's recorded outputs; returns the detail."""
