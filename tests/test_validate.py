"""edgeseg validate: reference vs every artifact of a real (tiny) build, pass and FAIL, report and PNG."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from edgeseg._io import read_json, write_json
from edgeseg.build_folder import BUILD_FORMAT, REPORT_FORMAT, BuildRecord
from edgeseg.build_folder import REPORT_FILE as REPORT_NAME
from edgeseg.checkpoint import ModelCard, save_model
from edgeseg.cli import main
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE
from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.models import list_models, register_model
from edgeseg.validate import GRID_NAME, Tolerances, report_failures, validate
from edgeseg.visualize import HEADER_HEIGHT, tile_size

SIZE = (32, 40)  # (H, W) the tiny model is exported at; not square, to catch H/W mix-ups
DATA = "synthetic::val"
# A random-init 32x40 model has many near-tie pixels on class boundaries, where FP16 rounding may
# flip the argmax: tests that are not about the FP16 gate use a looser FP16 threshold than the
# default 99.9 % (meant for trained models at full resolution).
LOOSE = Tolerances().with_overrides(fp16=99.0)


class ValidateTinyNet(nn.Module):
    """Stride-2 conv, 1x1 classifier, bilinear upsampling: segmentation I/O at the smallest cost."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.cls = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cls(torch.relu(self.conv(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def validate_tiny_net(num_classes: int = 7) -> nn.Module:
    return ValidateTinyNet(num_classes)


if "validate_tiny_net" not in list_models():  # the registry refuses duplicates
    register_model(validate_tiny_net)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build directory as the build stage leaves it: card, bundle, raw + FP16 ONNX, build.json."""
    import onnx
    from onnxconverter_common import float16

    root = tmp_path_factory.mktemp("validate") / "tiny"
    root.mkdir()
    torch.manual_seed(0)
    model = ValidateTinyNet(len(SYNTHETIC_CLASSES)).eval()
    card = ModelCard(preset="validate_tiny_net", num_classes=len(SYNTHETIC_CLASSES),
                     class_names=list(SYNTHETIC_CLASSES), palette=SYNTHETIC_PALETTE,
                     input_size=SIZE, dataset="synthetic")
    save_model(root / "model.pt", model, card)
    write_json(root / "card.json", card.to_dict())
    torch.onnx.export(model, (torch.zeros(1, 3, *SIZE),), str(root / "model.onnx"), dynamo=True,
                      input_names=["images"], output_names=["logits"], external_data=False, verbose=False)
    fp16 = float16.convert_float_to_float16(onnx.load(root / "model.onnx"), keep_io_types=True)
    onnx.save(fp16, root / "model.fp16.onnx")
    record = BuildRecord(root)  # build.json through its one writer: validate runs only recorded graphs
    record.meta["options"] = {"checkpoint": "model.pt", "precision": "fp16"}
    record.save()
    _record(root, "model.onnx", "model.fp16.onnx")
    return root


def _record(root: Path, *names: str) -> None:
    """Record ``names`` as outputs of a build stage, as if the build had written them."""
    record = BuildRecord(root)
    record.record(f"stage-{'-'.join(names)}", inputs={}, options={},
                  outputs={name: root / name for name in names})


def _copy(build_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(build_dir, tmp_path / "build"))


def _perturb(src: Path, dst: Path, scale: float = 0.5) -> None:
    """Write a copy of an ONNX graph whose first convolution's weights got noise."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    w = numpy_helper.to_array(init)
    noisy = w + scale * np.random.default_rng(0).standard_normal(w.shape).astype(w.dtype)
    init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, dst)


def test_validation_passes_and_writes_the_report(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    report = validate(root, data=DATA, num_images=6, tolerances=LOOSE, progress=False)

    assert report["passed"] and report_failures(report) == []
    written = read_json(root / REPORT_NAME)
    assert written.pop("format") == REPORT_FORMAT and written == json.loads(json.dumps(report))
    assert report["num_images"] == 6 and report["data"] == {"source": DATA, "ground_truth": "labels",
                                                            "judged_on": "the first 6 images"}
    assert report["reference"]["backend"] == "torch" and report["reference"]["miou"] is not None
    assert report["tolerances"] == {"pixel_agreement": {"fp32": 99.99, "fp16": 99.0, "int8": 99.5},
                                    "max_miou_drop": None}
    assert report["engine"]["status"] == "not_built"

    by_name = {Path(c["artifact"]).name: c for c in report["candidates"]}
    assert set(by_name) == {"model.onnx", "model.fp16.onnx"}
    fp32, fp16 = by_name["model.onnx"], by_name["model.fp16.onnx"]
    for cand in (fp32, fp16):
        for key in ("backend", "precision", "artifact", "miou", "miou_delta", "pixel_agreement",
                    "max_abs_logit_diff", "mean_abs_logit_diff", "per_class_iou_delta", "passed"):
            assert key in cand, key
        assert cand["backend"] == "onnxrt"
        assert set(cand["per_class_iou_delta"]) == set(SYNTHETIC_CLASSES)
    assert fp32["precision"] == "fp32" and fp32["graph_optimization"] == "all"
    assert fp16["precision"] == "fp16" and fp16["graph_optimization"] == "disabled"
    # FP32 ONNX vs PyTorch: same arithmetic up to rounding.
    assert fp32["pixel_agreement"] >= 99.99 and fp32["max_abs_logit_diff"] < 1e-3
    # FP16 rounds the weights and activations: visibly larger logit error, still agreeing.
    assert fp16["max_abs_logit_diff"] > fp32["max_abs_logit_diff"]
    assert fp16["pixel_agreement"] >= 99.0


def test_comparison_grid_is_written_with_the_expected_size(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    report = validate(root, data=DATA, num_images=5, grid_images=3, tolerances=LOOSE, progress=False)
    assert report["grid"] == GRID_NAME
    with Image.open(root / GRID_NAME) as im:
        size, mode = im.size, im.mode
        pixels = np.asarray(im)
    th, tw = tile_size(*SIZE)
    columns = 2 + 2 * len(report["candidates"])  # input, reference, candidates, disagreement maps
    assert mode == "RGB" and size == (columns * tw, HEADER_HEIGHT + 3 * th)
    # The reference column is drawn with the card's palette only.
    ref_tile = pixels[HEADER_HEIGHT:, tw:2 * tw].reshape(-1, 3)
    assert {tuple(p) for p in ref_tile} <= {tuple(c) for c in SYNTHETIC_PALETTE}


def test_perturbed_onnx_fails_with_the_gate_exit_code(build_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(build_dir, tmp_path)
    _perturb(root / "model.onnx", root / "model.sim.onnx")
    _record(root, "model.sim.onnx")
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--build", str(root), "--data", DATA, "-n", "4", "--grid-images", "2",
              "--tol-fp16", "99"])
    assert exit_info.value.code == ExitCode.ACCURACY_GATE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: validation failed: model.sim.onnx (onnxrt): pixel agreement")
    assert "99.99% (fp32 tolerance)" in err

    # Scored on other data than the build's own held-out set: its own report file.
    from edgeseg.validate import report_name_for

    assert not (root / REPORT_NAME).exists()
    report = read_json(root / report_name_for(DATA, None))
    assert not report["passed"]
    bad = next(c for c in report["candidates"] if c["artifact"].endswith("model.sim.onnx"))
    assert not bad["passed"] and bad["pixel_agreement"] < 99.99 and bad["max_abs_logit_diff"] > 0.1
    assert all(c["passed"] for c in report["candidates"] if c is not bad)
    with Image.open(root / GRID_NAME) as im:
        pixels = np.asarray(im)
    # The perturbed graph's disagreement tile (last column) has red pixels.
    th, tw = tile_size(*SIZE)
    columns = 2 + 2 * len(report["candidates"])
    position = [c["artifact"] for c in report["candidates"]].index(bad["artifact"])
    diff = pixels[HEADER_HEIGHT:, (columns - len(report["candidates"]) + position) * tw:][:, :tw]
    assert ((diff == [255, 0, 0]).all(-1)).any()


def test_tolerance_option_turns_a_failure_into_a_pass(build_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(build_dir, tmp_path)
    _perturb(root / "model.onnx", root / "model.sim.onnx", scale=0.02)
    _record(root, "model.sim.onnx")
    first = validate(root, data=DATA, num_images=4, grid_images=0, tolerances=LOOSE, progress=False)
    agreement = next(c for c in first["candidates"] if c["artifact"].endswith("sim.onnx"))["pixel_agreement"]
    assert agreement < 99.99, "perturbation too small to test the tolerance"
    main_args = ["validate", "-b", str(root), "--data", DATA, "-n", "4", "--grid-images", "0",
                 "--tol-fp32", str(agreement - 0.01), "--tol-fp16", "99", "--json"]
    main(main_args)  # returns normally: exit status 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"]
    assert report["tolerances"]["pixel_agreement"]["fp32"] == pytest.approx(agreement - 0.01)


def test_unlabelled_images_use_the_reference_as_ground_truth(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    (photos / "notes.txt").write_text("not an image")
    report = validate(root, images=photos, grid_images=0, tolerances=LOOSE, progress=False)
    assert report["num_images"] == 2 and report["data"]["ground_truth"] == "reference"
    assert report["reference"]["miou"] == 100.0
    fp32 = next(c for c in report["candidates"] if c["precision"] == "fp32")
    assert fp32["miou"] == pytest.approx(fp32["agreement_miou"])


def test_engine_without_tensorrt_is_reported_not_run(build_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(build_dir, tmp_path)
    (root / "model.fp16.engine").write_bytes(b"plan")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    report = validate(root, data=DATA, num_images=2, grid_images=0, tolerances=LOOSE, progress=False)
    (skipped,) = report["skipped"]
    assert skipped["backend"] == "tensorrt" and skipped["precision"] == "fp16"
    assert "tensorrt" in skipped["reason"]
    assert report["engine"] == {"status": "not_validated", "reason": skipped["reason"]}
    assert report["passed"]  # the ONNX artifacts passed; the engine was not judged


def test_engine_status_from_the_build_is_kept(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    status = {"status": "skipped", "reason": "TensorRT is not installed; run edgeseg build --from-onnx"}
    validate(root, data=DATA, num_images=1, grid_images=0, engine=status, progress=False)
    again = validate(root, data=DATA, num_images=1, grid_images=0, progress=False)
    assert again["engine"] == status


def test_input_errors(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    with pytest.raises(EdgesegError, match="not both"):
        validate(root, data=DATA, images=tmp_path, progress=False)
    with pytest.raises(EdgesegError, match="7 classes"):
        validate(root, data="synthetic::val", checkpoint=_other_bundle(tmp_path), progress=False)
    write_json(root / "build.json", {"format": BUILD_FORMAT, "options": {}})
    with pytest.raises(EdgesegError, match="--checkpoint"):
        validate(root, data=DATA, progress=False)
    with pytest.raises(EdgesegError, match="--tol-int8"):
        Tolerances().with_overrides(int8=101)


def _other_bundle(tmp_path: Path) -> Path:
    card = ModelCard(preset="validate_tiny_net", num_classes=3, input_size=SIZE)
    save_model(tmp_path / "other.pt", ValidateTinyNet(3), card)
    return tmp_path / "other.pt"


def test_subsets_report_each_set_and_judge_on_the_heldout_one(build_dir: Path, tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    tuning, heldout = [0, 2, 4], [1, 3, 5, 6]
    report = validate(root, data=DATA, subsets={"tuning": tuning, "heldout": heldout}, tolerances=LOOSE,
                      splits={"tuning": ["a"], "heldout": ["b"]}, progress=False)
    assert report["num_images"] == len(heldout) and report["data"]["judged_on"] == "heldout"
    assert report["splits"] == {"tuning": ["a"], "heldout": ["b"]}
    for c in report["candidates"]:
        assert set(c["tuning"]) >= {"pixel_agreement", "miou_delta", "passed"}
        # The headline is the held-out set's, figure for figure.
        for key in ("pixel_agreement", "miou_delta", "miou", "max_abs_logit_diff"):
            assert c[key] == c["heldout"][key]
    # The reference's own scores are the held-out images' too.
    alone = validate(root, data=DATA, subsets={"heldout": heldout}, tolerances=LOOSE, write=False,
                     progress=False)
    assert alone["reference"]["miou"] == report["reference"]["miou"]
    assert alone["candidates"][0]["pixel_agreement"] == report["candidates"][0]["pixel_agreement"]
    with pytest.raises(EdgesegError, match="subsets must include 'heldout'"):
        validate(root, data=DATA, subsets={"tuning": tuning}, write=False, progress=False)


def test_other_precisions_are_spot_checked_on_the_first_images_of_each_set(build_dir: Path,
                                                                           tmp_path: Path) -> None:
    root = _copy(build_dir, tmp_path)
    tuning, heldout = [0, 2, 4], [1, 3, 5, 6]
    report = validate(root, data=DATA, subsets={"tuning": tuning, "heldout": heldout}, tolerances=LOOSE,
                      progress=False, write=False, precision="fp16", spot_check=2)
    by = {c["precision"]: c for c in report["candidates"]}
    assert (by["fp16"]["images"], by["fp16"]["tuning"]["images"]) == (len(heldout), len(tuning))
    assert (by["fp32"]["images"], by["fp32"]["tuning"]["images"]) == (2, 2)
    # The spot-checked figures are those of its first images: the same as judging on those alone.
    first = validate(root, data=DATA, subsets={"heldout": heldout[:2]}, tolerances=LOOSE, progress=False,
                     write=False)
    fp32_first = next(c for c in first["candidates"] if c["precision"] == "fp32")
    assert by["fp32"]["max_abs_logit_diff"] == fp32_first["max_abs_logit_diff"]
    assert by["fp32"]["pixel_agreement"] == fp32_first["pixel_agreement"]
    everything = validate(root, data=DATA, subsets={"tuning": tuning, "heldout": heldout}, tolerances=LOOSE,
                          progress=False, write=False)
    assert all(c["images"] == len(heldout) for c in everything["candidates"])
