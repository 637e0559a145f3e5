"""Validate every deployed artifact of a build against the PyTorch reference.

The reference is the FP32 PyTorch model from the build's bundle. The candidates are every ONNX
graph in the build directory (raw, simplified, FP16, INT8 Q/DQ) run with ONNX Runtime, and every
TensorRT engine where TensorRT is importable. All run on the same images, preprocessed with the
model card's own statistics and input size. Per candidate this measures:

* always, against the reference: pixel agreement of the argmax maps (the gate), max / mean
  absolute logit difference, and mIoU / per-class IoU deltas;
* with labels (a dataset spec), mIoU and PA against the ground truth. Without labels the
  reference's own predictions stand in for the ground truth (``ground_truth: "reference"`` in the
  report): the reference then scores 100 and a candidate's mIoU is its agreement mIoU.

Why not Polygraphy's ``Comparator``: it keeps every output of every runner for every iteration in
memory and compares tensors element-wise; segmentation wants a streaming loop that folds each
image into confusion matrices (:class:`edgeseg.metrics.Agreement`) and keeps only a few maps for
the picture. That loop is a dozen lines over the runner interface, so it is written here.

Q/DQ graphs run as float fake-quantization and FP16 graphs unoptimised
(:func:`edgeseg.runners.loader.ort_settings`): ONNX Runtime's CPU fusions would otherwise rewrite
them into kernels TensorRT never executes. The gate is pixel agreement with
per-precision defaults (fp32 99.99 %, fp16 99.9 %, int8 99.5 %); mIoU differences below about 0.4
points on 64 images are noise, so the mIoU delta is reported but gated only on request.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeseg.build_folder import (
    CARD_FILE,
    RAW_ONNX,
    REPORT_FILE,
    BuildArtifacts,
    Precision,
    folder_lock,
    read_report,
    write_report,
)
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.metrics import CLASS_SHARE_MIN, against
from edgeseg.runners.base import BaseRunner
from edgeseg.runners.loader import EVALUATION_MODE
from edgeseg.trt import EngineMismatchError

__all__ = [
    "recorded_heldout",
    "report_name_for",
    "GRID_NAME",
    "Tolerances",
    "Candidate",
    "find_candidates",
    "validate",
    "report_failures",
    "report_table",
]

GRID_NAME = "validation.png"
_ALL = "all"  # the one image set when validate() is given no subsets
#: Below this share of its MACs in INT8, an INT8 graph is reported as INT8 mostly in name.
MIN_INT8_SHARE = 0.5


@dataclass(frozen=True)
class Tolerances:
    """Pass/fail thresholds of a validation.

    Args:
        pixel_agreement: minimum pixel agreement (percent) with the reference, per precision.
            Defaults to fp32 99.99, fp16 99.9, int8 99.5 (the INT8 target of the build's accuracy
            guard, which excludes sensitive layers from INT8 until it holds).
        max_miou_drop: fail a candidate whose mIoU is more than this many points below the
            reference's. Defaults to None (reported, not gated: on a few dozen images a few tenths
            of a point is noise).
    """

    pixel_agreement: dict[str, float] = field(
        default_factory=lambda: {"fp32": 99.99, "fp16": 99.9, "int8": 99.5})
    max_miou_drop: float | None = None

    def with_overrides(self, *, fp32: float | None = None, fp16: float | None = None,
                       int8: float | None = None, max_miou_drop: float | None = None) -> Tolerances:
        """A copy with the given thresholds replaced (``None`` keeps the current value)."""
        agreement = dict(self.pixel_agreement)
        for precision, value in (("fp32", fp32), ("fp16", fp16), ("int8", int8)):
            if value is not None:
                if not 0.0 <= value <= 100.0:
                    raise EdgesegError(f"--tol-{precision} must be a percentage in [0, 100], got {value}")
                agreement[precision] = value
        drop = self.max_miou_drop if max_miou_drop is None else max_miou_drop
        return Tolerances(agreement, drop)


@dataclass
class Candidate:
    """One deployed artifact to compare with the reference.

    Attributes:
        backend: ``"onnxrt"`` or ``"tensorrt"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        artifact: the file it runs.
        make_runner: builds the (inactive) runner.
        graph_optimization: ONNX Runtime's optimization level for this graph (None for engines).
        qdq_fusion: whether ONNX Runtime fused its Q/DQ pairs into integer kernels (None for engines).
    """

    backend: str
    precision: str
    artifact: Path
    make_runner: Callable[[], BaseRunner]
    graph_optimization: str | None = None
    qdq_fusion: bool | None = None


def find_candidates(artifacts: BuildArtifacts, plugin_libs: Sequence[str | os.PathLike[str]] = ()
                    ) -> tuple[list[Candidate], list[dict]]:
    """Candidates of a build folder, and the artifacts that cannot be run here (with why).

    Every artifact is checked against the sha256 its build stage recorded before it is opened.

    Args:
        artifacts: the build folder's contents.
        plugin_libs: TensorRT plugin libraries for the engines.

    Returns:
        ``(candidates, skipped)``; each skipped entry has ``backend``, ``precision``, ``artifact``,
        ``reason``.
    """
    from edgeseg.runners.loader import ort_has_cuda, ort_settings, runner_for
    from edgeseg.trt import tensorrt_available

    candidates: list[Candidate] = []
    graphs = [(artifacts.precision_of(path), path) for path in artifacts.onnx.values()]
    # Most accurate first, so the table and the picture read from fp32 down to int8.
    for precision, path in sorted(graphs, key=lambda pp: (pp[0].rank, pp[1].name)):
        artifacts.verify(path)
        settings = ort_settings(precision, gpu=ort_has_cuda())
        candidates.append(Candidate(
            "onnxrt", precision.value, path,
            functools.partial(runner_for, path, precision, side_by_side=True),
            graph_optimization=settings.graph_optimization, qdq_fusion=settings.qdq_fusion))
    skipped: list[dict] = []
    ok, reason = tensorrt_available()
    for precision, path in sorted(artifacts.engines.items(), key=lambda kv: kv[0].rank):
        if not ok:
            skipped.append({"backend": "tensorrt", "precision": precision.value, "artifact": str(path),
                            "reason": reason})
            continue
        artifacts.verify(path)
        candidates.append(Candidate("tensorrt", precision.value, path,
                                    functools.partial(runner_for, path, plugin_libs=plugin_libs)))
    if not candidates:
        raise EdgesegError(f"{artifacts.root}: nothing to validate (no model*.onnx and no runnable engine)")
    return candidates, skipped


# --- inputs ---------------------------------------------------------------------------------
@dataclass
class _Inputs:
    samples: Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]
    total: int
    source: str
    labelled: bool


def _inputs(card: ModelCard, data: str | None, images: str | os.PathLike[str] | None,
            num_images: int, indices: Sequence[int] | None = None) -> _Inputs:
    """``(index, image, mask)``: images normalised and resized to the card's input size, masks when
    labelled; the samples at ``indices``, else the first ``num_images``."""
    from edgeseg.data import load_dataset, parse_spec
    from edgeseg.data.transforms import EvalTransform

    if num_images < 1:
        raise EdgesegError(f"--num-images must be at least 1, got {num_images}")
    transform = EvalTransform(card.input_size, mean=card.mean, std=card.std)
    if images is not None:
        if data is not None:
            raise EdgesegError("give either a dataset spec (--data) or a folder of images (--images), "
                               "not both")
        from edgeseg.data.images import find_images, preprocess_image

        folder = Path(images)
        found = find_images(folder)
        chosen = list(indices) if indices is not None else list(range(min(num_images, len(found))))

        def from_folder() -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
            for i in chosen:
                yield i, preprocess_image(found[i], transform), None

        return _Inputs(from_folder(), len(chosen), str(folder), labelled=False)

    spec = data or card.dataset
    if not spec:
        raise EdgesegError("no validation images: give --data KIND:ROOT[:split] or --images DIR "
                           "(the model card names no dataset)")
    kind, root, split = parse_spec(spec)
    dataset = load_dataset(kind, root, split, transform=transform)
    if dataset.num_classes != card.num_classes:
        raise EdgesegError(f"dataset {spec} has {dataset.num_classes} classes but the model has "
                           f"{card.num_classes}")
    chosen = list(indices) if indices is not None else list(range(min(num_images, len(dataset))))

    def from_dataset() -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        for i in chosen:
            x, mask = dataset[i]
            yield i, x, mask

    return _Inputs(from_dataset(), len(chosen), spec, labelled=True)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), digits)


def _significant(x: float) -> float | None:
    # Logit errors span 1e-7 (fp32) to 1e+0 (a broken graph): keep 4 significant digits, not decimals.
    return None if math.isnan(x) else float(f"{x:.4g}")


def _per_class(names: list[str], values: Sequence[float]) -> dict[str, float | None]:
    return {n: _round(v) for n, v in zip(names, values, strict=True)}


#: Images per set on which a build's validation runs the graphs of other precisions than its own:
#: an FP32 export or simplification that is wrong is wrong on any image, and at 512x1024 each graph
#: costs about a second per image on two cores.
SPOT_CHECK_IMAGES = 4


def validate(
    build_dir: str | os.PathLike[str],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    data: str | None = None,
    images: str | os.PathLike[str] | None = None,
    num_images: int = 64,
    tolerances: Tolerances | None = None,
    engine: dict[str, Any] | None = None,
    grid_images: int = 4,
    plugin_libs: Sequence[str | os.PathLike[str]] = (),
    write: bool = True,
    report_name: str = REPORT_FILE,
    subsets: Mapping[str, Sequence[int]] | None = None,
    splits: Mapping[str, Any] | None = None,
    reference: BaseRunner | None = None,
    notes: Sequence[str] = (),
    progress: bool = True,
    precision: str | None = None,
    spot_check: int = SPOT_CHECK_IMAGES,
) -> dict[str, Any]:
    """Compare every artifact of a build with the PyTorch reference; write ``report.json`` and a PNG.

    Args:
        build_dir: ``engines/<name>/`` (needs ``card.json`` and at least one ONNX graph or engine).
        checkpoint: the PyTorch bundle (``.pt``). Defaults to the one ``build.json`` records.
        data: dataset spec ``KIND:ROOT[:split]`` (labelled). Defaults to the card's dataset when
            ``images`` is not given either.
        images: a folder of unlabelled images, instead of ``data``.
        num_images: how many images (the first N). Defaults to 64.
        tolerances: pass/fail thresholds. Defaults to :class:`Tolerances`' defaults.
        engine: the ``engine: {status, reason}`` entry the build passes in. Defaults to the entry of
            an existing ``report.json``, else a description of the engines present.
        grid_images: how many images the PNG grid shows (0: no picture). Defaults to 4.
        plugin_libs: TensorRT plugin libraries for engines.
        write: write the report and the PNG into ``build_dir``. Defaults to True.
        report_name: the report's file name in ``build_dir``. Defaults to ``report.json`` (the
            build's own; scoring other data goes to another name so it never replaces it).
        subsets: named sets of sample indices of ``data``/``images`` (``"heldout"`` required,
            e.g. also ``"tuning"``). Each candidate then gets one sub-object per set, and its
            headline figures and verdict are the held-out set's. Defaults to one set: the first
            ``num_images`` samples.
        splits: what to record as ``report["splits"]`` (sample names of every set, including
            the calibration images). Defaults to none.
        reference: the FP32 reference as an inactive runner (a source that is no bundle: a
            ``.pt2`` program, a module, an FP32 ONNX graph). Defaults to the ``checkpoint``; for a
            build from an ONNX source, its FP32 ``model.onnx`` on ONNX Runtime.
        notes: lines the report carries under ``notes`` (what the build skipped on purpose).
        progress: show a progress bar on stderr. Defaults to True.
        precision: the precision the build made. Graphs of other precisions (the FP32 export and
            simplification of an INT8 build) are then spot-checked: they run on the first
            ``spot_check`` images of each set only, and each result says on how many
            (``images``). Defaults to None: every graph on every image.
        spot_check: images per set for the spot-checked graphs. Defaults to
            :data:`SPOT_CHECK_IMAGES`.

    Returns:
        The report (the content of ``report.json``); ``report["passed"]`` is the verdict.

    Raises:
        EdgesegError: bad build directory, missing reference, unreadable data.
    """
    from edgeseg.checkpoint import load_model
    from edgeseg.compare import infer
    from edgeseg.metrics import Agreement, ConfusionMatrix, to_labels
    from edgeseg.runners.torch import TorchRunner

    root = Path(build_dir)
    artifacts = BuildArtifacts.from_dir(root)
    card = artifacts.card
    # Images are prepared as the reference takes them, NCHW RGB; a card saying otherwise is refused.
    card.require_input("edgeseg validate", str(root / CARD_FILE))
    tolerances = tolerances or Tolerances()
    ckpt = Path(checkpoint) if checkpoint is not None else artifacts.checkpoint()
    source_kind = ((artifacts.record.meta.get("source") or {}) if artifacts.record else {}).get("kind")
    if reference is None and ckpt is None and source_kind == "onnx":
        from edgeseg.runners.loader import runner_for

        # An ONNX source's reference is the FP32 graph itself (adapted to the card's I/O).
        reference = runner_for(artifacts.verify(root / RAW_ONNX), "fp32", name=f"onnxrt:{RAW_ONNX} (FP32)",
                               side_by_side=True)
    if reference is None:
        if ckpt is None:
            raise EdgesegError(f"{root}: no FP32 reference; build.json records no existing .pt bundle "
                               "(pass --checkpoint)")
        model, ref_card = load_model(ckpt)
        # The input size may differ: a build can export the model at another size (--input), and
        # the reference then runs at the build's size too (images are preprocessed with its card).
        if ref_card.num_classes != card.num_classes:
            raise EdgesegError(f"{ckpt} ({ref_card.num_classes} classes) is not the model of {root} "
                               f"({card.num_classes} classes)")
        reference = TorchRunner(model, name=f"torch:{ckpt.name}")
    candidates, skipped = find_candidates(artifacts, plugin_libs)
    if subsets is not None and "heldout" not in subsets:
        raise EdgesegError(f"validate: subsets must include 'heldout', got {sorted(subsets)}")
    sets = {k: set(v) for k, v in subsets.items()} if subsets is not None else None
    order = sorted(set().union(*sets.values())) if sets is not None else None
    inputs = _inputs(card, data, images, num_images, order)
    names = card.class_names or [str(i) for i in range(card.num_classes)]
    set_names = list(sets) if sets is not None else [_ALL]

    reference_cms = {k: ConfusionMatrix(card.num_classes, card.ignore_index) for k in set_names}
    agreements = [{k: Agreement(card.num_classes, card.ignore_index) for k in set_names} for _ in candidates]
    errors: list[str | None] = [None] * len(candidates)
    # Images each candidate ran per set; a spot-checked one stops at its limit.
    counts = [dict.fromkeys(set_names, 0) for _ in candidates]
    limits = [math.inf if precision is None or c.precision == precision else spot_check for c in candidates]
    times: list[list[float]] = [[] for _ in candidates]
    grid_rows: list[Any] = []
    active: list[BaseRunner | None] = []
    sampled: list[np.ndarray] = []  # a few inputs, for the preprocessing-contract check

    with contextlib.ExitStack() as stack:
        stack.enter_context(reference)
        for i, cand in enumerate(candidates):
            try:
                active.append(stack.enter_context(cand.make_runner()))
            except EdgesegError as e:
                active.append(None)
                # An engine built for another GPU, or no TensorRT here, says nothing about the
                # artifact's accuracy: report it as not run rather than failed.
                if isinstance(e, (MissingDependencyError, EngineMismatchError)):
                    skipped.append({"backend": cand.backend, "precision": cand.precision,
                                    "artifact": str(cand.artifact), "reason": str(e)})
                else:
                    errors[i] = str(e)
        for index, x, mask in _progress(inputs, progress):
            if len(sampled) < 4:
                sampled.append(x[:, ::4, ::4].numpy())  # a strided sample is enough for channel means
            member = [k for k in set_names if sets is None or index in sets[k]]
            batch = x[None].numpy()
            ref_out = infer(reference, batch)
            ref_labels = to_labels(ref_out)
            # Without labels the reference's own prediction is the ground truth.
            target = mask[None] if mask is not None else ref_labels
            for k in member:
                reference_cms[k].update(ref_labels, target)
            outs: list[np.ndarray | None] = []
            for i, runner in enumerate(active):
                due = [k for k in member if counts[i][k] < limits[i]]
                if runner is None or errors[i] is not None or not due:
                    outs.append(None)
                    continue
                try:
                    out = infer(runner, batch)
                    for k in due:
                        agreements[i][k].update(ref_out, out, target)
                        counts[i][k] += 1
                except EdgesegError as e:
                    errors[i], out = str(e), None
                times[i].append(runner.last_inference_time() or 0.0)
                outs.append(out)
            if len(grid_rows) < grid_images:
                grid_rows.append((x, ref_labels[0].numpy(),
                                  [None if o is None else to_labels(o)[0].numpy() for o in outs]))

    ran = [i for i, runner in enumerate(active) if runner is not None or errors[i] is not None]
    judged = "heldout" if sets is not None else _ALL
    results = []
    for i in ran:
        # Headline figures and the verdict come from the judged (held-out) set; each set's own
        # figures sit beside them.
        result = _candidate_result(candidates[i], agreements[i][judged], errors[i], times[i], tolerances,
                                   names)
        result["images"] = counts[i][judged]
        if sets is not None:
            for k in set_names:
                result[k] = _candidate_result(candidates[i], agreements[i][k], errors[i], times[i],
                                              tolerances, names, metrics_only=True)
                result[k]["images"] = counts[i][k]
        results.append(result)
    ref = reference_cms[judged].compute()
    passed = bool(results) and all(r["passed"] for r in results)
    report: dict[str, Any] = {
        "build": str(root),
        "reference": {"backend": "onnxrt" if reference.name.startswith("onnxrt") else "torch",
                      "precision": "fp32", "artifact": str(ckpt) if ckpt is not None else reference.name,
                      "miou": _round(ref.miou), "pa": _round(ref.pa),
                      "per_class_iou": _per_class(names, ref.iou)},
        "data": {"source": inputs.source, "ground_truth": "labels" if inputs.labelled else "reference",
                 "judged_on": judged if sets is not None else f"the first {inputs.total} images"},
        "evaluation_mode": EVALUATION_MODE,
        "splits": dict(splits) if splits is not None else None,
        "num_images": len(sets[judged]) if sets is not None else inputs.total,
        "notes": list(notes),
        "warnings": _contract(artifacts, card, sampled, inputs.source),
        "tolerances": asdict(tolerances),
        "candidates": results,
        "skipped": skipped,
        "passed": passed,
        "engine": engine or _engine_status(root, artifacts.engines, skipped),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if write:
        if grid_rows:
            report["grid"] = GRID_NAME
            _write_grid(root / GRID_NAME, grid_rows, results, ran, card)
        with folder_lock(root):  # not while a build of this folder is writing it
            write_report(root, report, report_name)
    return report


def _progress(inputs: _Inputs, enabled: bool) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    if not enabled:
        yield from inputs.samples
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("images", total=inputs.total)
        for sample in inputs.samples:
            yield sample
            bar.advance(task)


def _candidate_result(cand: Candidate, agreement: Any, error: str | None, times: list[float],
                      tol: Tolerances, names: list[str], *, metrics_only: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {} if metrics_only else {
        "backend": cand.backend,
        "precision": cand.precision,
        "artifact": str(cand.artifact),
        "graph_optimization": cand.graph_optimization,
        "qdq_fusion": cand.qdq_fusion,
    }
    if error is not None:
        return {**result, "error": error, "passed": False, "failures": [error]}
    if agreement.vs_reference.mat.sum() == 0:  # a set with no image in it
        return {**result, "images": 0, "passed": False, "failures": ["no image in this set"]}
    m = agreement.compute()
    failures = []
    threshold = tol.pixel_agreement[cand.precision]
    if not m.pixel_agreement >= threshold:
        failures.append(f"pixel agreement {against(m.pixel_agreement, threshold)}% < {threshold}% "
                        f"({cand.precision} tolerance)")
    if tol.max_miou_drop is not None and m.miou_delta < -tol.max_miou_drop:
        failures.append(f"mIoU {m.miou_delta:+.2f} points vs the reference (allowed -{tol.max_miou_drop})")
    # A class that disappears (or appears) is named whatever the agreement says: it is the "one
    # class everywhere" breakdown reduced precision causes on segmentation models. The agreement
    # gate judges; this tells the user what to look at.
    warnings = []
    coverage = None
    if cand.precision == "int8" and cand.artifact.suffix == ".onnx" and not metrics_only:
        from edgeseg.precision.coverage import int8_coverage

        coverage = int8_coverage(cand.artifact)
        if coverage.share_macs < MIN_INT8_SHARE:
            warnings.append(f"only {100 * coverage.share_macs:.1f} % of the MACs run in INT8 "
                            f"({coverage.layers_int8} of {coverage.layers} layers): INT8 in name mostly")
    for kind, classes in (("vanished", m.vanished), ("appeared", m.appeared)):
        if classes:
            warnings.append(f"class(es) {', '.join(names[c] for c in classes)} {kind} "
                            f"(the {'reference' if kind == 'vanished' else 'candidate'} predicts them on "
                            f"≥ {100 * CLASS_SHARE_MIN:g} % of pixels, the other never)")
    result.update({
        "miou": _round(m.other.miou),
        "pa": _round(m.other.pa),
        "miou_delta": _round(m.miou_delta),
        "pixel_agreement": _round(m.pixel_agreement),
        "agreement_miou": _round(m.agreement_miou),
        "max_abs_logit_diff": _significant(m.max_abs_error),
        "mean_abs_logit_diff": _significant(m.mean_abs_error),
        "per_class_iou_delta": _per_class(names, m.iou_delta),
        **({"int8_coverage": coverage.to_dict()} if coverage is not None else {}),
        "vanished_classes": [names[c] for c in m.vanished],
        "appeared_classes": [names[c] for c in m.appeared],
        "ms_per_image": None if metrics_only or not times else _round(1000 * float(np.mean(times)), 2),
        "passed": not failures,
        "failures": failures,
        "warnings": warnings,
    })
    return result


def _contract(artifacts: BuildArtifacts, card: ModelCard, sampled: list[np.ndarray],
              source: str) -> list[str]:
    """Do the validation images look like the calibration images (channel order, value range)?"""
    from edgeseg.data.stats import PixelStats, contract_warnings

    expected = artifacts.record.meta.get("input_stats") if artifacts.record else None
    if not expected or not sampled:
        return []
    seen = PixelStats.from_normalised(np.stack(sampled), card.mean, card.std)
    return contract_warnings(seen, PixelStats.from_dict(expected), f"the images of {source}")


def recorded_heldout(build_dir: str | os.PathLike[str]) -> tuple[str, list[int]]:
    """The held-out set the build judged on (``report.json`` → ``splits``): its dataset and indices.

    Raises:
        EdgesegError: the build has no report, or its report records no held-out set.
    """
    report = read_report(build_dir)
    splits = (report or {}).get("splits") or {}
    names = splits.get("heldout") or []
    source = splits.get("source")
    if not source or not names:
        raise EdgesegError(f"{build_dir}: its report records no held-out evaluation set (build it with "
                           "labelled --val-data, or pass --data / --images)")
    prefix = f"{source}["
    try:
        indices = [int(n[len(prefix):-1]) for n in names if n.startswith(prefix) and n.endswith("]")]
    except ValueError:
        indices = []
    if len(indices) != len(names):
        raise EdgesegError(f"{build_dir}/{REPORT_FILE}: splits.heldout does not name samples of {source}")
    return source, indices


def report_name_for(data: str | None, images: str | os.PathLike[str] | None) -> str:
    """``report.json`` for the build's own evaluation set; ``report.<data>.json`` for other data.

    Scoring other images must never replace the build's own verdict.
    """
    label = data if data is not None else (Path(images).name if images is not None else None)
    if label is None:
        return REPORT_FILE
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in label).strip("_")[:64] or "data"
    return f"report.{slug}.json"


def _engine_status(root: Path, engines: dict[Precision, Path], skipped: list[dict]) -> dict[str, Any]:
    """The build's own ``engine`` entry when a report has one, else what the directory shows."""
    with contextlib.suppress(EdgesegError):
        previous = read_report(root)
        if previous is not None and isinstance(previous.get("engine"), dict):
            return previous["engine"]
    if not engines:
        return {"status": "not_built", "reason": f"no model.<precision>.engine in {root}"}
    reasons = [s["reason"] for s in skipped if s["backend"] == "tensorrt"]
    if reasons:
        return {"status": "not_validated", "reason": reasons[0]}
    return {"status": "built", "reason": ""}


def _write_grid(path: Path, rows: list[Any], results: list[dict], ran: list[int], card: ModelCard) -> None:
    from edgeseg.data._base import bit_palette
    from edgeseg.visualize import GridRow, save_comparison_grid, to_display_image

    palette = card.palette or bit_palette(card.num_classes)
    grid = []
    for x, ref_labels, cand_labels in rows:
        # A candidate that failed to run has no map; show the reference so its diff column is empty.
        maps = [cand_labels[i] if cand_labels[i] is not None else ref_labels for i in ran]
        grid.append(GridRow(to_display_image(x, card.mean, card.std), ref_labels, maps))
    save_comparison_grid(path, grid, [Path(r["artifact"]).name for r in results], palette)


# --- presentation ---------------------------------------------------------------------------
def report_failures(report: dict[str, Any]) -> list[str]:
    """One line per failed candidate: ``"model.int8.onnx: pixel agreement 97.1% < 99.0% ..."``."""
    return [f"{Path(c['artifact']).name} ({c['backend']}): " + "; ".join(c["failures"])
            for c in report["candidates"] if not c["passed"]]


def report_table(report: dict[str, Any]) -> Any:
    """A rich table summarising a report (one row per candidate, the reference first)."""
    from rich.table import Table

    def fmt(value: Any, spec: str = ".2f") -> str:
        return "—" if value is None else format(value, spec)

    gt = report["data"]["ground_truth"]
    table = Table(title=f"validation on {report['num_images']} images ({report['data']['source']}; "
                        f"ground truth: {gt})")
    text_columns = ("artifact", "backend", "precision", "result")
    for col in ("artifact", "backend", "precision", "mIoU", "ΔmIoU", "pixel agr. %", "max |Δlogit|",
                "mean |Δlogit|", "ms/img", "result"):
        table.add_column(col, justify="left" if col in text_columns else "right")
    ref = report["reference"]
    table.add_row(Path(ref["artifact"]).name, "torch", "fp32", fmt(ref["miou"]), *[""] * 5, "reference")
    for c in report["candidates"]:
        verdict = "[green]pass[/green]" if c["passed"] else "[red]FAIL[/red]"
        table.add_row(Path(c["artifact"]).name, c["backend"], c["precision"], fmt(c.get("miou")),
                      fmt(c.get("miou_delta"), "+.2f"), fmt(c.get("pixel_agreement"), ".3f"),
                      fmt(c.get("max_abs_logit_diff"), ".2e"), fmt(c.get("mean_abs_logit_diff"), ".2e"),
                      fmt(c.get("ms_per_image"), ".1f"), verdict)
    for s in report["skipped"]:
        table.add_row(Path(s["artifact"]).name, s["backend"], s["precision"], "", "", "", "", "", "",
                      "[yellow]skipped[/yellow]")
    return table
