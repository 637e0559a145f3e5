"""The images a build works on: calibration, guard tuning and held-out evaluation.

:class:`ImageSets` is the half of :class:`~edgeseg.stages.context.BuildContext` that finds, draws
and loads images (once each); :class:`Splits` is the disjoint draw it makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.build_folder import BuildRecord, Precision
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.stages.options import DEMO_CALIBRATION, BuildOptions, ModelSource

__all__ = ["ImageSets", "Splits"]


@dataclass(frozen=True)
class Splits:
    """The images a build judges on, drawn disjoint and seeded from one source.

    Attributes:
        spec: the labelled dataset (``KIND:ROOT[:split]``), or a folder of unlabelled images.
        tuning: sample indices the accuracy guard tunes the INT8 graph on.
        heldout: sample indices the validation judges the deployed graph on (never tuned on).
        calibration: sample indices of the calibration set when it comes from the same source
            (empty when calibration has a source of its own).
        labelled: False for a folder of images: the reference's predictions stand in for labels.
        seed: the draw's seed.
    """

    spec: str
    tuning: list[int]
    heldout: list[int]
    calibration: list[int]
    labelled: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Sample names per set, as ``report.json`` records them."""
        def names(ids: list[int]) -> list[str]:
            return [f"{self.spec}[{i}]" for i in ids]

        return {"source": self.spec, "labelled": self.labelled, "seed": self.seed,
                "tuning": names(self.tuning), "heldout": names(self.heldout),
                "calibration": names(self.calibration)}



class ImageSets:
    """Calibration, tuning and held-out images of a build (a base of ``BuildContext``).

    It reads the build's options, source, card and record and keeps what it loaded in the
    ``_calibration``, ``_validation`` and ``_splits`` fields that ``BuildContext`` declares.
    """

    options: BuildOptions
    reporter: Any  # edgeseg.stages.context.Reporter
    folder: Path
    record: BuildRecord
    precision: Precision
    source: ModelSource | None
    card: ModelCard | None
    _calibration: Any
    _validation: Any
    _splits: Splits | None

    def need_card(self) -> ModelCard:
        if self.card is None:
            raise EdgesegError(f"{self.folder}: no model card yet (the card stage has not run)")
        return self.card

    def calibration_spec(self) -> str | None:
        if self.options.calib_data:
            return self.options.calib_data
        if self.source is not None and self.source.is_demo:
            return DEMO_CALIBRATION
        card = self.need_card()
        if card.dataset:
            return _dataset_split(card.dataset, "train")
        return None

    def validation_data(self) -> tuple[str | None, int]:
        """Dataset spec and image count the guard and validation score on."""
        from edgeseg.data.splits import default_set_size
        from edgeseg.precision.calibration import resolve_manifest

        spec = self.options.val_data
        size = self.options.val_size
        if spec is None:
            calib = self.calibration_spec()
            manifest = resolve_manifest(calib) if calib else None
            if manifest is not None and manifest.val_data:
                spec = manifest.val_data
                if size is None and manifest.val_size:
                    size = manifest.val_size
            elif self.need_card().dataset:
                spec = _dataset_split(self.need_card().dataset, "val")  # type: ignore[arg-type]
            elif calib is not None and manifest is None and ":" in calib and not Path(calib).is_dir():
                # The one labelled source given: calibration, tuning and held-out images are drawn
                # from it, disjoint (splits()), rather than skipping the guard and the validation;
                # unless its labels are of other classes than the model's, which nothing can score.
                spec = calib if _num_classes(calib) == self.need_card().num_classes else None
        if size is None:
            size = default_set_size(tuple(self.need_card().input_size))  # type: ignore[arg-type]
        return spec, size

    def calib_size(self) -> int:
        """``--calib-size``, else the calibration manifest's ``size``, else 32."""
        from edgeseg.precision.calibration import DEFAULT_CALIB_SIZE, resolve_manifest

        if self.options.calib_size is not None:
            return self.options.calib_size
        spec = self.calibration_spec()
        manifest = resolve_manifest(spec) if spec else None
        return manifest.size if manifest is not None and manifest.size else DEFAULT_CALIB_SIZE

    def calibration_set(self, required: bool) -> Any:
        """The preprocessed calibration images (loaded once), or None when there are none."""
        from edgeseg.precision.calibration import load_calibration_set, load_image_files, load_validation_set

        if self._calibration is not None:
            return self._calibration
        spec = self.calibration_spec()
        if spec is None:
            if required:
                raise EdgesegError("INT8 needs calibration images: pass --calib-data (a folder of images, "
                                   "KIND:ROOT[:split] or a manifest name such as demo)")
            return None
        card = self.need_card()
        splits = self.splits()
        with self.reporter.task("loading calibration images", self.calib_size()) as progress:
            if splits is not None and splits.calibration and not splits.labelled:
                self._calibration = load_image_files(
                    splits.spec, splits.calibration, input_size=tuple(card.input_size),  # type: ignore[arg-type]
                    mean=card.mean, std=card.std, progress=progress)
            elif splits is not None and splits.calibration:
                # Calibration shares its source with validation: its draw is disjoint from both sets.
                self._calibration = load_validation_set(
                    splits.spec, input_size=tuple(card.input_size), mean=card.mean,  # type: ignore[arg-type]
                    std=card.std, indices=splits.calibration, progress=progress)
            else:
                self._calibration = load_calibration_set(
                    spec, input_size=tuple(card.input_size), mean=card.mean,  # type: ignore[arg-type]
                    std=card.std, size=self.calib_size(), progress=progress)
        from edgeseg.data.stats import PixelStats

        # The preprocessing contract later frames are checked against (runtime, validate).
        stats = PixelStats.from_normalised(self._calibration.images, card.mean, card.std)
        self.record.meta["input_stats"] = stats.to_dict()
        return self._calibration

    def splits(self) -> Splits | None:
        """The tuning and held-out sets (drawn once), or None without labelled validation data."""
        from edgeseg.data.splits import MIN_HELDOUT, split_indices
        from edgeseg.precision.calibration import dataset_length, validation_spec

        if self._splits is not None:
            return self._splits
        spec, size = self.validation_data()
        if spec is None:
            return self._image_folder_splits(size)
        spec = validation_spec(spec)
        calib = self.calibration_spec()
        shared = calib is not None and self.precision is Precision.INT8 and calib == spec
        n = dataset_length(spec)
        sizes = {"heldout": size, "tuning": size}
        if shared:
            sizes["calibration"] = self.calib_size()
        if n < sum(sizes.values()):
            # Too few for the sizes asked: the held-out and tuning sets share what calibration leaves.
            rest = n - sizes.get("calibration", 0) if n - sizes.get("calibration", 0) >= 2 else n
            sizes = {"heldout": max(1, rest - rest // 2), "tuning": max(1, rest // 2),
                     **({"calibration": max(1, n - rest)} if shared else {})}
        if n < len(sizes):
            raise EdgesegError(f"{spec}: {n} image(s), too few to tune and judge on different images")
        drawn = split_indices(n, sizes)
        self._splits = Splits(spec, drawn["tuning"], drawn["heldout"], drawn.get("calibration", []))
        if len(self._splits.heldout) < MIN_HELDOUT:
            self.reporter.note(f"only {len(self._splits.heldout)} held-out image(s) in {spec} after "
                               f"{len(self._splits.tuning)} for tuning"
                               + (f" and {len(self._splits.calibration)} for calibration" if shared else "")
                               + ": the verdict rests on few images (give more, or a separate --val-data)")
        return self._splits

    def _image_folder_splits(self, size: int) -> Splits | None:
        """Without labelled data, a plain folder of calibration images is split three ways."""
        from edgeseg.data.images import find_images
        from edgeseg.data.splits import split_indices
        from edgeseg.precision.calibration import resolve_manifest

        folder = self.calibration_spec()
        if folder is None or not Path(folder).is_dir() or resolve_manifest(folder) is not None:
            return None
        n = len(find_images(Path(folder), strict=True))
        wanted = {"heldout": size, "tuning": size, "calibration": self.calib_size()}
        if n < sum(wanted.values()):
            # Few images: a quarter each to judge and to tune on, the rest to calibrate.
            quarter = max(1, n // 4)
            wanted = {"heldout": quarter, "tuning": quarter, "calibration": max(1, n - 2 * quarter)}
        if n < 3:
            raise EdgesegError(f"--calib-data {folder}: {n} image(s); without labelled --val-data the "
                               "build needs at least 3 to calibrate, tune and judge on different images")
        drawn = split_indices(n, wanted)
        self._splits = Splits(folder, drawn["tuning"], drawn["heldout"], drawn["calibration"], labelled=False)
        self.reporter.note(f"no labelled validation data: {folder} split into {len(drawn['calibration'])} "
                           f"calibration, {len(drawn['tuning'])} tuning and {len(drawn['heldout'])} held-out "
                           "images; accuracy is agreement with the FP32 reference (no labels used)")
        return self._splits

    def validation_set(self) -> Any:
        """The guard's tuning images (loaded once): with labels, or alone (masks None)."""
        from edgeseg.precision.calibration import load_image_files, load_validation_set

        if self._validation is not None:
            return self._validation
        splits = self.splits()
        if splits is None:
            return None
        card = self.need_card()
        with self.reporter.task("loading tuning images", len(splits.tuning)) as progress:
            if splits.labelled:
                self._validation = load_validation_set(
                    splits.spec, input_size=tuple(card.input_size), mean=card.mean,  # type: ignore[arg-type]
                    std=card.std, indices=splits.tuning, progress=progress)
            else:
                self._validation = load_image_files(
                    splits.spec, splits.tuning, input_size=tuple(card.input_size),  # type: ignore[arg-type]
                    mean=card.mean, std=card.std, progress=progress)
        return self._validation


def _num_classes(spec: str) -> int:
    from edgeseg.data import load_dataset, parse_spec

    return load_dataset(*parse_spec(spec)).num_classes


def _dataset_split(spec: str, split: str) -> str:
    from edgeseg.data import parse_spec

    kind, root, _ = parse_spec(spec)
    return f"{kind}:{root}:{split}"
