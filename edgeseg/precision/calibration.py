"""Calibration and validation sets: where the images come from and how they are preprocessed.

``--calib-data`` accepts three kinds of source:

* a folder of images (:data:`edgeseg.data.images.IMAGE_SUFFIXES`; an ``images/`` subfolder is
  used when present, as in the ``folder`` dataset layout), decoded by
  :func:`edgeseg.data.images.read_image` (16-bit files scaled, 0..1 float files scaled, other
  floats refused);
* a dataset spec ``KIND:ROOT[:split]`` read with :func:`edgeseg.data.load_dataset`;
* a manifest: a YAML file, or the name of one shipped with the package
  (``demo`` → ``edgeseg/assets/calibration/demo.yaml``); see ``docs/calibration.md`` for its fields.

Preprocessing is the model's own, read from its :class:`~edgeseg.checkpoint.ModelCard`: resize to
``input_size`` then normalise with ``mean``/``std``, through the same
:class:`edgeseg.data.transforms.EvalTransform` that evaluation uses. Sampling ``--calib-size`` images
is seeded, so a rebuild sees the same set and the set's hash keys the calibration cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.assets import CALIBRATION_DIR
from edgeseg.errors import EdgesegError

__all__ = [
    "CalibrationSet",
    "Manifest",
    "dataset_length",
    "load_image_files",
    "load_calibration_set",
    "load_validation_set",
    "validation_spec",
    "resolve_manifest",
    "CALIBRATION_DIR",
    "DEFAULT_CALIB_SIZE",
]

#: Calibration images taken when neither the caller nor the manifest gives a size.
DEFAULT_CALIB_SIZE = 32
_MANIFEST_SUFFIXES = (".yaml", ".yml")

# Called after each image is loaded: (done, total).
Progress = Callable[[int, int], None]


@dataclass
class CalibrationSet:
    """Preprocessed images (and masks, when the source has them) ready to feed the graph.

    Args:
        images: float32 ``(N, 3, H, W)``, resized and normalised.
        source: human-readable description of where they came from.
        items: one identifier per image (file path or ``dataset[index]``).
        masks: int64 ``(N, H, W)`` class ids (255 = ignore), or None for bare image folders.
        num_classes: class count of the source dataset, when known.
    """

    images: np.ndarray
    source: str
    items: list[str] = field(default_factory=list)
    masks: np.ndarray | None = None
    num_classes: int | None = None

    @property
    def sha256(self) -> str:
        """Hash of the preprocessed pixels: identical sets hash equal whatever their path."""
        h = hashlib.sha256()
        h.update(repr((self.images.shape, str(self.images.dtype))).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Manifest:
    """A calibration manifest (YAML).

    Args:
        path: the manifest file.
        data: calibration source (folder or ``KIND:ROOT[:split]``), relative paths resolved against
            the manifest's folder.
        files: explicit image list (instead of ``data``), relative to the manifest's folder.
        size: default ``--calib-size``.
        seed: sampling seed.
        val_data: dataset spec used by the accuracy guard and validation.
        val_size: default number of validation images.
        description: free text.
    """

    path: Path
    data: str | None = None
    files: list[str] = field(default_factory=list)
    size: int | None = None
    seed: int = 0
    val_data: str | None = None
    val_size: int | None = None
    description: str = ""


def resolve_manifest(spec: str) -> Manifest | None:
    """Return the manifest ``spec`` names (a YAML path or a name in ``calibration/``), else None.

    Raises:
        EdgesegError: the manifest cannot be read, or a field has the wrong type or range (one line
            naming the file and the field).
    """
    import yaml

    path = Path(spec)
    if path.suffix not in _MANIFEST_SUFFIXES:
        named = CALIBRATION_DIR / f"{spec}.yaml"
        if "/" in spec or os.sep in spec or not named.is_file():
            return None
        path = named
    if not path.is_file():
        raise EdgesegError(f"{path}: calibration manifest not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{path}: unreadable calibration manifest ({e})") from None
    except yaml.YAMLError as e:
        raise EdgesegError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise EdgesegError(f"{path}: a calibration manifest must be a mapping of fields")
    unknown = sorted(str(k) for k in raw if k not in _MANIFEST_FIELDS)
    if unknown:
        raise EdgesegError(f"{path}: unknown manifest fields {unknown} (known: {sorted(_MANIFEST_FIELDS)})")
    fields = {name: check(path, name, raw.get(name)) for name, check in _MANIFEST_FIELDS.items()}
    if bool(fields["data"]) == bool(fields["files"]):
        raise EdgesegError(f"{path}: give exactly one of 'data' (a folder or KIND:ROOT[:split]) or 'files'")
    base = path.parent
    return Manifest(
        path=path,
        data=_relative_spec(fields["data"], base) if fields["data"] else None,
        files=[str(base / f) for f in fields["files"]],
        size=fields["size"],
        seed=fields["seed"],
        val_data=_relative_spec(fields["val_data"], base) if fields["val_data"] else None,
        val_size=fields["val_size"],
        description=fields["description"],
    )


def _field_error(path: Path, name: str, expected: str, value: Any) -> EdgesegError:
    return EdgesegError(f"{path}: manifest field '{name}' must be {expected}, got {value!r}")


def _count(minimum: int) -> Callable[[Path, str, Any], int | None]:
    """Checker of an optional integer field >= ``minimum`` (YAML booleans are not integers)."""
    def check(path: Path, name: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _field_error(path, name, f"an integer >= {minimum}", value)
        return value
    return check


def _text(path: Path, name: str, value: Any) -> str:
    """An optional string field ('' when absent); numbers are refused, not stringified."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _field_error(path, name, "a string", value)
    return value


def _file_list(path: Path, name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(f, str) and f for f in value):
        raise _field_error(path, name, "a list of image paths", value)
    return value


def _seed(path: Path, name: str, value: Any) -> int:
    checked = _count(0)(path, name, value)
    return 0 if checked is None else checked


# field -> checker(manifest path, field name, raw YAML value) -> checked value
_MANIFEST_FIELDS: dict[str, Callable[[Path, str, Any], Any]] = {
    "data": _text,
    "files": _file_list,
    "size": _count(1),
    "seed": _seed,
    "val_data": _text,
    "val_size": _count(1),
    "description": _text,
}


def _relative_spec(spec: str, base: Path) -> str:
    """Resolve the folder or ROOT part of ``spec`` against ``base`` when it is a relative path."""
    spec = str(spec)
    if ":" not in spec:
        return spec if Path(spec).is_absolute() else str(base / spec)
    kind, _, rest = spec.partition(":")
    root, sep, split = rest.partition(":")
    if root and not Path(root).is_absolute() and (base / root).exists():
        root = str(base / root)
    return f"{kind}:{root}{sep}{split}"


def _sample(n: int, size: int, seed: int) -> list[int]:
    """``size`` distinct indices out of ``n``, seeded and in ascending order (all when size >= n)."""
    if size < 1:
        raise EdgesegError(f"calibration size must be >= 1, got {size}")
    if size >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=size, replace=False))


def _preprocess_files(files: Sequence[str | os.PathLike[str]], transform: Any,
                      progress: Progress | None) -> np.ndarray:
    from edgeseg.data.images import preprocess_image

    out = []
    for i, path in enumerate(files):
        out.append(preprocess_image(path, transform).numpy())  # EdgesegError naming a bad file
        if progress:
            progress(i + 1, len(files))
    return np.stack(out).astype(np.float32, copy=False)


def _from_dataset(spec: str, transform: Any, size: int | None, progress: Progress | None,
                  indices: Sequence[int] | None = None) -> CalibrationSet:
    """Samples of a dataset: ``indices`` when given, else the first ``size`` (all when None)."""
    from edgeseg.data import load_dataset, parse_spec

    kind, root, split = parse_spec(spec)
    dataset = load_dataset(kind, root, split, transform=transform)
    if len(dataset) == 0:
        raise EdgesegError(f"{spec}: dataset split is empty")
    if indices is None:
        indices = list(range(min(size or len(dataset), len(dataset))))
        how = "the first ones"
    else:
        how = "a seeded draw"
    images, masks = [], []
    for n, i in enumerate(indices):
        image, mask = dataset[i]
        images.append(image.numpy())
        masks.append(mask.numpy())
        if progress:
            progress(n + 1, len(indices))
    return CalibrationSet(
        images=np.stack(images).astype(np.float32, copy=False),
        masks=np.stack(masks).astype(np.int64, copy=False),
        source=f"{spec} ({len(indices)} of {len(dataset)}, {how})",
        items=[f"{spec}[{i}]" for i in indices],
        num_classes=dataset.num_classes,
    )


def load_image_files(
    folder: str | os.PathLike[str],
    indices: Sequence[int],
    *,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    progress: Progress | None = None,
) -> CalibrationSet:
    """The images at ``indices`` of a folder (in :func:`edgeseg.data.images.find_images` order).

    Unlabelled: ``masks`` is None, and whoever scores them uses the reference's predictions.
    """
    from edgeseg.data.images import find_images
    from edgeseg.data.transforms import EvalTransform

    transform = EvalTransform(tuple(input_size), mean=tuple(mean), std=tuple(std))
    files = find_images(Path(folder), strict=True)
    picked = [files[i] for i in indices]
    return CalibrationSet(images=_preprocess_files(picked, transform, progress),
                          source=f"{folder} ({len(picked)} of {len(files)} images, a seeded draw)",
                          items=[str(p) for p in picked])


def dataset_length(spec: str) -> int:
    """How many samples a labelled dataset spec (or a manifest's ``val_data``) holds."""
    from edgeseg.data import load_dataset, parse_spec

    spec = validation_spec(spec)
    kind, root, split = parse_spec(spec)
    return len(load_dataset(kind, root, split))


def validation_spec(spec: str) -> str:
    """The labelled dataset spec behind ``spec`` (a manifest's ``val_data``, or ``spec`` itself).

    Raises:
        EdgesegError: a manifest without ``val_data``, or a source without labels.
    """
    manifest = resolve_manifest(spec)
    if manifest is not None:
        if not manifest.val_data:
            raise EdgesegError(f"{manifest.path}: has no 'val_data' for validation; pass --val-data")
        spec = manifest.val_data
    if ":" not in spec or Path(spec).is_dir():
        raise EdgesegError(f"--val-data {spec!r}: validation needs labels; give a dataset spec "
                           "KIND:ROOT[:split] (e.g. folder:PATH for images/ + masks/)")
    return spec


def load_calibration_set(
    spec: str,
    *,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> CalibrationSet:
    """Load and preprocess a calibration set.

    Args:
        spec: folder, ``KIND:ROOT[:split]``, manifest path, or manifest name in ``calibration/``.
        input_size: model input ``(H, W)``.
        mean: normalisation mean (0..1 RGB), from the model card.
        std: normalisation std (0..1 RGB), from the model card.
        size: number of images to sample (all of them when the source has fewer). Defaults to
            the manifest's ``size``, else :data:`DEFAULT_CALIB_SIZE` (32).
        seed: sampling seed. Defaults to the manifest's seed, else 0.
        progress: called as ``progress(done, total)`` after each image.

    Returns:
        A :class:`CalibrationSet`.

    Raises:
        EdgesegError: unknown source, empty folder, unreadable or non-image file (named).
    """
    from edgeseg.data.transforms import EvalTransform

    transform = EvalTransform(tuple(input_size), mean=tuple(mean), std=tuple(std))
    manifest = resolve_manifest(spec)
    if manifest is not None:
        seed = manifest.seed if seed is None else seed
        size = manifest.size if size is None else size
    seed = 0 if seed is None else seed
    size = DEFAULT_CALIB_SIZE if size is None else size
    if manifest is not None:
        if manifest.files:
            missing = [f for f in manifest.files if not Path(f).is_file()]
            if missing:
                raise EdgesegError(f"{manifest.path}: listed image {missing[0]} not found")
            listed = [manifest.files[i] for i in _sample(len(manifest.files), size, seed)]
            return CalibrationSet(images=_preprocess_files(listed, transform, progress),
                                  source=f"{manifest.path} ({len(listed)} files)", items=listed)
        spec = manifest.data or ""  # resolve_manifest guarantees data when there are no files
    path = Path(spec)
    if path.is_dir():
        from edgeseg.data.images import find_images

        files = find_images(path, strict=True)
        picked = [files[i] for i in _sample(len(files), size, seed)]
        return CalibrationSet(images=_preprocess_files(picked, transform, progress),
                              source=f"{path} ({len(picked)} of {len(files)} images, seed {seed})",
                              items=[str(p) for p in picked])
    if ":" in spec and not path.exists():
        return _from_dataset(spec, transform, size, progress)
    if path.is_file():
        raise EdgesegError(f"{path}: --calib-data must be a folder of images, a manifest (.yaml) "
                           "or a dataset spec KIND:ROOT[:split]")
    raise EdgesegError(f"--calib-data {spec!r}: no such folder, manifest or dataset spec KIND:ROOT[:split]")


def load_validation_set(
    spec: str,
    *,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    size: int | None = None,
    indices: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> CalibrationSet:
    """Load images of a labelled validation set (a spec or a manifest's ``val_data``).

    Args:
        spec: dataset spec, or a manifest whose ``val_data`` names one.
        input_size: model input ``(H, W)``.
        mean: normalisation mean (0..1 RGB).
        std: normalisation std (0..1 RGB).
        size: number of images (the first ones) when ``indices`` is not given; None takes the
            manifest's ``val_size`` or all.
        indices: exactly these samples (e.g. the guard's tuning set from
            :func:`edgeseg.data.splits.split_indices`).
        progress: called as ``progress(done, total)`` after each image.

    Raises:
        EdgesegError: the spec has no labels (a bare image folder) or cannot be read.
    """
    from edgeseg.data.transforms import EvalTransform

    manifest = resolve_manifest(spec)
    if manifest is not None and size is None:
        size = manifest.val_size
    spec = validation_spec(spec)
    transform = EvalTransform(tuple(input_size), mean=tuple(mean), std=tuple(std))
    return _from_dataset(spec, transform, size, progress, indices)
