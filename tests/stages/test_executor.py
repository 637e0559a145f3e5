"""`edgeseg build` end to end on a small DBMSNet: artifacts, records, resume, cache, TensorRT-missing path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from edgeseg._io import read_json, sha256_file
from edgeseg.build_folder import BuildRecord
from edgeseg.checkpoint import ModelCard, save_model
from edgeseg.cli import main
from edgeseg.errors import EdgesegError
from edgeseg.stages import Build, BuildOptions, Reporter
from edgeseg.trt import tensorrt_available

HAS_TRT = tensorrt_available()[0]
NO_TRT = pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed: the engine is built, not skipped")


class RecordingReporter(Reporter):
    """Keeps what a build reports, for assertions."""

    def __init__(self) -> None:
        self.stages: dict[str, str] = {}
        self.notes: list[str] = []

    def stage(self, name: str, status: str, detail: str = "") -> None:
        self.stages[name] = status

    def note(self, message: str) -> None:
        self.notes.append(message)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        yield lambda done, total: None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edgeseg.data.synthetic import SYNTHETIC_CLASSES, write_synthetic
    from edgeseg.models import build_model

    root = tmp_path_factory.mktemp("build")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=7, width=0.25).eval()
    card = ModelCard(preset="dbmsnet_r18_os16", num_classes=7, overrides={"width": 0.25},
                     class_names=list(SYNTHETIC_CLASSES), input_size=(64, 64), dataset="synthetic")
    save_model(root / "tiny.pt", model, card)
    write_synthetic(root / "cal", 4, size=64, split="calib")
    torch.set_num_threads(previous)
    return {"root": root, "bundle": root / "tiny.pt", "cal": root / "cal", "engines": root / "engines"}


def _options(ws: dict[str, Path], **kwargs: Any) -> BuildOptions:
    # A random-weight model: the accuracy guard and the validation gate get generous budgets (both
    # are tested on purpose-built models in tests/precision and by the validate tests).
    base = dict(model=str(ws["bundle"]), out_dir=ws["engines"], calib_data=str(ws["cal"]), calib_size=4,
                val_data="synthetic::val", val_size=4, max_miou_drop=100.0, min_agreement=0.0)
    return BuildOptions(**{**base, **kwargs})


@pytest.fixture(scope="module")
def int8_build(workspace: dict[str, Path]) -> tuple[Any, RecordingReporter]:
    torch.set_num_threads(1)
    reporter = RecordingReporter()
    return Build(_options(workspace, precision="int8"), reporter).run(), reporter


@NO_TRT
def test_int8_build_writes_every_artifact_and_skips_the_engine(int8_build: tuple) -> None:
    result, reporter = int8_build
    folder = result.folder
    assert folder.name == "tiny" and result.deploy_onnx == folder / "model.int8.onnx"
    for name in ("card.json", "model.onnx", "model.sim.onnx", "model.int8.onnx", "build.json", "report.json"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "calib_cache").glob("*.cache"))) == 1
    assert not list(folder.glob("*.engine")) and not list(folder.glob("*.engine.json"))
    record = read_json(folder / "build.json")
    assert record["options"]["precision"] == "int8" and record["options"]["checkpoint"].endswith("tiny.pt")
    stages = record["stages"]
    assert [s for s in stages if stages[s]["status"] == "done"] == [
        "card", "export", "simplify", "calibrate", "quantize", "validate"]
    for stage in stages.values():  # every recorded output is the file on disk
        for out in stage["outputs"].values():
            assert sha256_file(folder / out["path"]) == out["sha256"]
    assert stages["simplify"]["results"]["nodes_before"] >= stages["simplify"]["results"]["nodes_after"]
    assert stages["quantize"]["results"]["accuracy_guard"]["status"] == "done"
    assert stages["engine:int8"]["status"] == "skipped" and stages["engine:int8"]["reason"]
    report = read_json(folder / "report.json")
    assert report["engine"]["status"] == "skipped" and report["engine"]["reason"]
    assert report["engine"]["finish_with"] == f"edgeseg build --from-onnx {folder / 'model.int8.onnx'}"
    hints = [n for n in reporter.notes if "finish on the target with: edgeseg build --from-onnx" in n]
    assert len(hints) == 1 and "\n" not in hints[0]


@NO_TRT
def test_rebuild_reuses_stages_and_calibration_cache(int8_build: tuple, workspace: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.precision.ranges as ranges

    calls = []
    monkeypatch.setattr(ranges, "collect_ranges", lambda *a, **k: calls.append(a) or {})
    reporter = RecordingReporter()
    # Only the guard budget changed: calibration is reused, quantization re-runs.
    result = Build(_options(workspace, precision="int8", max_miou_drop=50.0), reporter).run()
    assert calls == []
    assert reporter.stages["card"] == reporter.stages["export"] == reporter.stages["simplify"] == "cached"
    assert reporter.stages["calibrate"] == "cached" and reporter.stages["quantize"] == "done"
    assert any("calibration cache hit" in n for n in reporter.notes)
    stages = read_json(result.folder / "build.json")["stages"]
    assert stages["calibrate"]["results"]["reused"] is False  # still the record of the original run
    assert stages["quantize"]["options"]["max_miou_drop"] == 50.0
    # Without its record, the calibration stage still finds the keyed cache instead of recalibrating.
    BuildRecord(result.folder).forget("calibrate")
    Build(_options(workspace, precision="int8", max_miou_drop=50.0), RecordingReporter()).run()
    assert calls == []
    assert read_json(result.folder / "build.json")["stages"]["calibrate"]["results"]["reused"] is True


@NO_TRT
def test_rerun_forces_one_stage(int8_build: tuple, workspace: dict[str, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.precision.ranges as ranges

    calls: list = []
    original = ranges.collect_ranges
    monkeypatch.setattr(ranges, "collect_ranges", lambda *a, **k: calls.append(a) or original(*a, **k))
    reporter = RecordingReporter()
    Build(_options(workspace, precision="int8", rerun=("calibrate",)), reporter).run()
    assert len(calls) == 1 and reporter.stages["calibrate"] == "done"
    assert reporter.stages["export"] == "cached"
    with pytest.raises(EdgesegError, match="--rerun: unknown stage"):
        Build(_options(workspace, rerun=("engine",))).run()


@NO_TRT
def test_from_onnx_and_require_engine(int8_build: tuple, capsys: pytest.CaptureFixture) -> None:
    result, _ = int8_build
    onnx_path = result.folder / "model.int8.onnx"
    with pytest.raises(EdgesegError, match="graph holds int8 .read from its nodes., but --precision fp16"):
        Build(BuildOptions(from_onnx=onnx_path, precision="fp16")).run()
    # Skips export and calibration, reuses the validation, then refuses to skip the engine.
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--from-onnx", str(onnx_path), "--require-engine", "--min-agreement", "0",
              "--val-data", "synthetic::val", "--val-size", "4"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--require-engine: TensorRT is not available" in errors[0]
    assert not list(result.folder.glob("*.engine"))


def test_fp16_build_reuses_the_export(int8_build: tuple, workspace: dict[str, Path]) -> None:
    reporter = RecordingReporter()
    result = Build(_options(workspace, precision="fp16"), reporter).run()
    assert reporter.stages["export"] == "cached" and reporter.stages["fp16"] == "done"
    assert result.deploy_onnx.name == "model.fp16.onnx" and result.deploy_onnx.is_file()
    candidates = {Path(c["artifact"]).name: c for c in read_json(result.folder / "report.json")["candidates"]}
    assert candidates["model.fp16.onnx"]["passed"]
    assert {"model.int8.onnx", "model.sim.onnx"} <= set(candidates)  # every graph in the folder


@pytest.mark.parametrize("argv, message", [
    (["build", "-m", "no/such/model.pt"], "checkpoint not found"),
    (["build", "--calib-method", "kl", "-m", "x.pt"], "--calib-method must be one of"),
    (["build", "--shapes", "1,2"], "--shapes expects three batch sizes"),
    (["build", "-m", "dbmsnet_r18_os16", "--plugin", "fused-ddc"], "builds --precision fp32 only"),
])
def test_cli_bad_options_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "engines").exists()


def test_non_model_onnx_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "model.int8.onnx"
    junk.write_text("definitely not protobuf")
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--from-onnx", str(junk)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not an ONNX model" in err and "\n" not in err


def test_empty_calibration_folder_leaves_no_int8_artifact(int8_build: tuple, workspace: dict[str, Path],
                                                          tmp_path: Path) -> None:
    result, _ = int8_build
    # A copy of the build without its INT8 outputs: export and simplify are reused from the records.
    copy = tmp_path / "engines" / "tiny"
    shutil.copytree(result.folder, copy, ignore=shutil.ignore_patterns("model.int8.onnx", "calib_cache",
                                                                        "report.json", "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesegError, match="no images"):
        Build(_options(workspace, precision="int8", out_dir=tmp_path / "engines",
                       calib_data=str(tmp_path / "empty"))).run()
    assert not (copy / "model.int8.onnx").exists()
    assert not list(copy.glob("calib_cache/*"))
    assert not (copy / "report.json").exists()


@NO_TRT
def test_from_onnx_outside_a_build_folder_uses_the_embedded_card(int8_build: tuple, tmp_path: Path) -> None:
    result, _ = int8_build
    lone = tmp_path / "lone" / "city.int8.onnx"
    lone.parent.mkdir()
    shutil.copyfile(result.folder / "model.int8.onnx", lone)
    reporter = RecordingReporter()
    out = Build(BuildOptions(from_onnx=lone, out_dir=tmp_path / "engines"), reporter).run()
    assert out.folder == tmp_path / "engines" / "city" and out.precision == "int8"
    assert read_json(out.folder / "card.json") == read_json(result.folder / "card.json")
    assert sha256_file(out.folder / "model.int8.onnx") == sha256_file(lone)
    # No checkpoint travels with a lone ONNX: validation is skipped (and says why), never faked.
    assert reporter.stages["validate"] == "skipped" and not (out.folder / "report.json").exists()
    assert out.engine_status == "skipped" and lone.is_file()


def test_export_command_is_the_first_stages(int8_build: tuple, workspace: dict[str, Path],
                                            capsys: pytest.CaptureFixture) -> None:
    import json

    result, _ = int8_build
    main(["export", "-m", str(workspace["bundle"]), "--out-dir", str(workspace["engines"]), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["folder"] == str(result.folder)
    assert out["export"]["results"]["opset"] == 18 and out["export"]["results"]["trt_compat"]["nodes"] > 0
    assert out["simplify"]["outputs"]["onnx"]["sha256"] == sha256_file(result.folder / "model.sim.onnx")


@NO_TRT
def test_plugin_build_validates_the_plugin_graph(workspace: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.ops.ort_custom_op as ort_custom_op
    from edgeseg.errors import MissingDependencyError
    from edgeseg.export.onnx_export import load_onnx
    from edgeseg.ops.onnx_plugin import plugin_nodes

    # The real FP32 gate (pixel agreement ≥ 99.99 %), not the random-weight tests' zero budget.
    options = _options(workspace, precision="fp32", plugin="fused-ddc", name="tiny_plugin",
                       min_agreement=None)

    def missing() -> str:
        raise MissingDependencyError("onnxruntime_extensions", purpose="running plugin-form ONNX on the CPU")

    # Where the plugin nodes cannot run, validation fails (it never passes by skipping them) ...
    with monkeypatch.context() as patch:
        patch.setattr(ort_custom_op, "register_custom_ops", missing)
        with pytest.raises(EdgesegError, match="validation failed.*no fp32 artifact could be validated"):
            Build(options, RecordingReporter()).run()
    failed = read_json(workspace["engines"] / "tiny_plugin" / "report.json")
    assert not failed["passed"] and not failed["candidates"]
    assert {s["artifact"].split("/")[-1] for s in failed["skipped"]} == {"model.onnx", "model.sim.onnx"}
    assert all("onnxruntime_extensions" in s["reason"] for s in failed["skipped"])
    simplify = read_json(workspace["engines"] / "tiny_plugin" / "build.json")["stages"]["simplify"]
    assert simplify["results"]["output_check"].startswith("skipped: Python package 'onnxruntime_extensions'")
    # ... and that failure is not reused: the next run validates again, and the plugin graphs pass.
    reporter = RecordingReporter()
    result = Build(options, reporter).run()
    assert reporter.stages["export"] == "cached" and reporter.stages["validate"] == "done"
    assert result.deploy_onnx.name == "model.sim.onnx"
    assert len(plugin_nodes(load_onnx(result.deploy_onnx))) == 3  # the MDM's three DDC blocks
    report = read_json(result.folder / "report.json")
    assert report["passed"] and not report["skipped"]
    candidates = {Path(c["artifact"]).name: c for c in report["candidates"]}
    assert set(candidates) == {"model.onnx", "model.sim.onnx"}
    for c in candidates.values():
        assert c["backend"] == "onnxrt" and c["passed"] and c["pixel_agreement"] >= 99.99
        assert c["max_abs_logit_diff"] < 1e-3
    # A passed validation is reused.
    reporter = RecordingReporter()
    Build(options, reporter).run()
    assert reporter.stages["validate"] == "cached"


def _copy_without_int8(result: Any, tmp_path: Path) -> Path:
    """A copy of the int8 build folder in ``tmp_path/engines``: export and simplify stay reusable."""
    copy = tmp_path / "engines" / "tiny"
    shutil.copytree(result.folder, copy,
                    ignore=shutil.ignore_patterns("model.int8.onnx", "report.json", "*.png"))
    return copy


@NO_TRT
def test_interrupted_quantize_leaves_no_int8_graph(int8_build: tuple, workspace: dict[str, Path],
                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeseg.precision.int8 as int8

    result, _ = int8_build
    copy = _copy_without_int8(result, tmp_path)

    def half_written(src: Any, dst: Any, **kwargs: Any) -> Any:
        Path(dst).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(int8, "quantize_int8", half_written)
    with pytest.raises(KeyboardInterrupt):
        Build(_options(workspace, precision="int8", out_dir=tmp_path / "engines")).run()
    assert not (copy / "model.int8.onnx").exists()
    quantize = read_json(copy / "build.json")["stages"]["quantize"]
    # A KeyboardInterrupt no signal raised (the test's own) is named like Ctrl-C.
    assert quantize["status"] == "failed" and quantize["reason"] == "interrupted by SIGINT"
    assert quantize["duration_s"] >= 0


@NO_TRT
def test_graph_the_guard_cannot_save_is_rejected_not_deployed(int8_build: tuple, workspace: dict[str, Path],
                                                              tmp_path: Path) -> None:
    from edgeseg.errors import AccuracyGateError, ExitCode

    result, _ = int8_build
    copy = _copy_without_int8(result, tmp_path)
    # 100 % agreement and no mIoU loss: unreachable for a random-weight INT8 graph.
    options = _options(workspace, precision="int8", out_dir=tmp_path / "engines", max_miou_drop=0.0,
                       min_agreement=100.0)
    with pytest.raises(AccuracyGateError, match="misses its target") as info:
        Build(options, RecordingReporter()).run()
    assert info.value.exit_code == ExitCode.ACCURACY_GATE
    assert not (copy / "model.int8.onnx").exists() and (copy / "model.int8.onnx.rejected").is_file()
    assert read_json(copy / "build.json")["stages"]["quantize"]["status"] == "failed"
    from edgeseg.build_folder import BuildArtifacts

    assert BuildArtifacts.from_dir(copy).onnx_for("int8") is None


@NO_TRT
def test_truncated_calibration_cache_is_rebuilt(int8_build: tuple, workspace: dict[str, Path],
                                                tmp_path: Path) -> None:
    result, _ = int8_build
    copy = _copy_without_int8(result, tmp_path)
    (cache,) = (copy / "calib_cache").glob("*.cache")
    good = cache.read_text()
    cache.write_text(good[: len(good) // 2])  # a crash mid-write, or a disk that filled up
    reporter = RecordingReporter()
    Build(_options(workspace, precision="int8", out_dir=tmp_path / "engines"), reporter).run()
    assert any("calibration cache not trusted" in n and "does not match" in n for n in reporter.notes)
    assert reporter.stages["calibrate"] == "done"
    assert cache.read_text() == good


@NO_TRT
def test_each_stage_records_time_and_peak_memory(int8_build: tuple) -> None:
    result, _ = int8_build
    stages = read_json(result.folder / "build.json")["stages"]
    for name in ("card", "export", "simplify", "calibrate", "quantize", "validate"):
        assert stages[name]["peak_rss_mib"] > 10, name  # a Python process with torch loaded
        assert stages[name]["duration_s"] >= 0


@pytest.mark.parametrize("options, message", [
    ({"name": ".."}, r"--name '\.\.': a name must be"),
    ({"name": "../../x"}, "--name '../../x'"),
    ({"from_onnx": ".x.onnx"}, r"build name '' taken from --from-onnx"),
])
def test_build_names_cannot_escape_the_output_folder(options: dict, message: str, int8_build: tuple,
                                                     tmp_path: Path) -> None:
    result, _ = int8_build
    if "from_onnx" in options:
        hidden = tmp_path / "src" / options["from_onnx"]
        hidden.parent.mkdir()
        shutil.copyfile(result.folder / "model.int8.onnx", hidden)
        options = {"from_onnx": hidden}
    with pytest.raises(EdgesegError, match=message):
        Build(BuildOptions(out_dir=tmp_path / "engines", **options)).run()
    assert not (tmp_path / "engines").exists() or not any((tmp_path / "engines").iterdir())


@NO_TRT
def test_report_judges_on_heldout_images_disjoint_from_tuning_and_calibration(int8_build: tuple) -> None:
    result, reporter = int8_build
    # 4 held-out images (val_size=4): the build says its verdict rests on few images.
    assert any("4 held-out image(s)" in n and "few images" in n for n in reporter.notes)
    report = read_json(result.folder / "report.json")
    splits = report["splits"]
    tuning, heldout, calibration = set(splits["tuning"]), set(splits["heldout"]), set(splits["calibration"])
    assert tuning and heldout and calibration
    assert not tuning & heldout and not calibration & (tuning | heldout)
    assert report["data"]["judged_on"] == "heldout" and report["num_images"] == len(heldout)
    int8 = next(c for c in report["candidates"] if c["precision"] == "int8")
    assert int8["pixel_agreement"] == int8["heldout"]["pixel_agreement"]
    coverage = int8["int8_coverage"]
    assert 0 < coverage["layers_int8"] <= coverage["layers"] and 0 < coverage["macs_int8"] <= coverage["macs"]
    assert isinstance(int8["vanished_classes"], list) and isinstance(int8["warnings"], list)
    # The guard tuned on exactly the tuning images.
    guard = read_json(result.folder / "build.json")["stages"]["quantize"]["results"]["accuracy_guard"]
    assert f"{len(tuning)} of" in guard["validation"] and "seeded draw" in guard["validation"]


def test_input_size_other_than_the_cards_builds_and_validates(workspace: dict[str, Path]) -> None:
    # --input 32x48 on a 64x64 card: export, reference and validation all use 32x48.
    result = Build(_options(workspace, precision="fp32", input_size=(32, 48), name="tiny_32x48")).run()
    assert read_json(result.folder / "card.json")["input_size"] == [32, 48]
    report = read_json(result.folder / "report.json")
    assert report["passed"] and all(c["passed"] for c in report["candidates"])


@NO_TRT
def test_unlabelled_images_are_split_three_ways_and_judged_by_agreement(workspace: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    from edgeseg.checkpoint import load_model, save_model

    images = tmp_path / "photos"
    shutil.copytree(workspace["cal"] / "images", images)  # images only: no masks, no classes file
    model, card = load_model(workspace["bundle"])
    card.dataset = ""  # a user's model: no dataset to fall back on
    save_model(tmp_path / "mine.pt", model, card)
    reporter = RecordingReporter()
    options = BuildOptions(model=str(tmp_path / "mine.pt"), out_dir=tmp_path / "engines", precision="int8",
                           calib_data=str(images), min_agreement=0.0)
    result = Build(options, reporter).run()
    report = read_json(result.folder / "report.json")
    splits = report["splits"]
    assert splits["labelled"] is False and splits["source"] == str(images)
    sets = [set(splits[k]) for k in ("calibration", "tuning", "heldout")]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert report["data"]["ground_truth"] == "reference" and report["data"]["judged_on"] == "heldout"
    guard = read_json(result.folder / "build.json")["stages"]["quantize"]["results"]["accuracy_guard"]
    assert guard["labels"] is False and guard["max_miou_drop"] is None  # no mIoU budget without labels
    assert any("no labels used" in n for n in reporter.notes)


@NO_TRT
def test_no_guard_skips_the_guard_on_purpose_and_says_so(int8_build: tuple, workspace: dict[str, Path],
                                                         tmp_path: Path) -> None:
    import edgeseg.precision.guard as guard

    result, _ = int8_build
    _copy_without_int8(result, tmp_path)
    calls: list = []
    original = guard.run_accuracy_guard
    guard.run_accuracy_guard = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore[assignment]
    try:
        Build(_options(workspace, precision="int8", out_dir=tmp_path / "engines", guard=False)).run()
    finally:
        guard.run_accuracy_guard = original  # type: ignore[assignment]
    folder = tmp_path / "engines" / "tiny"
    assert calls == []
    quantize = read_json(folder / "build.json")["stages"]["quantize"]
    assert quantize["results"]["accuracy_guard"] == {"status": "skipped", "reason": "--no-guard (on purpose)"}
    assert any("--no-guard" in n for n in read_json(folder / "report.json")["notes"])


def test_an_input_size_the_model_cannot_take_fails_in_the_card_stage(tmp_path: Path) -> None:
    # FCN on VGG pools five times: 20x20 leaves nothing for the 7x7 fc6. Refused before any export.
    with pytest.raises(EdgesegError, match=r"--input 20x20: the model cannot take this input size"):
        Build(BuildOptions(model="fcn8s_vgg16", num_classes=3, input_size=(20, 20), out_dir=tmp_path,
                           precision="int8", calib_data="synthetic::calib")).run()
    assert not list(tmp_path.rglob("model.onnx"))


def test_a_labelled_calibration_source_alone_is_split_three_ways(tmp_path: Path) -> None:
    # Only --calib-data KIND:ROOT given: calibration, tuning and held-out images are drawn from it,
    # disjoint, so the guard and the validation run (they used to be skipped, with exit 0).
    # 7 classes: the synthetic set's own, so its labels score the model (other counts: no validation).
    options = BuildOptions(model="dbmsnet_r18_os16", num_classes=7, input_size=(32, 32), out_dir=tmp_path,
                           precision="int8", calib_data="synthetic::calib", calib_size=4, val_size=3,
                           max_miou_drop=100.0, min_agreement=0.0)
    result = Build(options).run()
    splits = read_json(result.folder / "report.json")["splits"]
    assert splits["source"] == "synthetic::calib" and splits["labelled"] is True
    sets = [set(splits[k]) for k in ("calibration", "tuning", "heldout")]
    assert [len(s) for s in sets] == [4, 3, 3]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    stages = read_json(result.folder / "build.json")["stages"]
    assert stages["validate"]["status"] == "done"
    assert stages["quantize"]["results"]["accuracy_guard"].get("status") != "skipped"


def test_int8_without_calibration_images_fails_before_any_work(tmp_path: Path) -> None:
    # A preset has no dataset to fall back on: refused in the set-up, not after export + simplify.
    with pytest.raises(EdgesegError, match=r"--precision int8 needs calibration images: pass --calib-data"):
        Build(BuildOptions(model="dbmsnet_r18_os16", num_classes=3, input_size=(64, 64), out_dir=tmp_path,
                           precision="int8")).run()
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("build.json"))


@NO_TRT
def test_the_runtime_warns_about_bgr_frames(int8_build: tuple, tmp_path: Path) -> None:
    import warnings

    import numpy as np

    from edgeseg import Segmenter

    result, _ = int8_build
    stats = read_json(result.folder / "build.json")["input_stats"]
    assert len(stats["mean_rgb"]) == 3 and stats["max"] > 2  # recorded from the calibration images
    # The synthetic set has no colour cast (red ~ blue); a street scene has one (blue sky):
    folder = Path(shutil.copytree(result.folder, tmp_path / "street"))
    record = BuildRecord(folder)
    record.meta["input_stats"] = {"mean_rgb": [80.0, 90.0, 120.0], "max": 255.0}
    record.save()
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0] = 150  # red above blue: a blue-cast scene fed as BGR
    frame[..., 2] = 60
    with Segmenter.load(folder, backend="onnxruntime", precision="fp32") as seg, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg(frame)
        seg(frame)  # warned once, not per frame
    lines = [str(w.message) for w in caught if "look BGR" in str(w.message)]
    assert len(lines) == 1


def test_a_manifests_size_is_the_default_calib_size(workspace: dict[str, Path], tmp_path: Path) -> None:
    import yaml

    from edgeseg.stages.context import BuildContext

    manifest = tmp_path / "mine.yaml"
    fields = {"data": str(workspace["cal"]), "size": 3, "val_data": "synthetic::val"}
    manifest.write_text(yaml.safe_dump(fields))
    options = _options(workspace, calib_data=str(manifest), calib_size=None, precision="int8")
    ctx = BuildContext(options=options, reporter=Reporter(), folder=tmp_path, record=BuildRecord(tmp_path),
                       precision=options.precision)
    assert ctx.calib_size() == 3
    options = _options(workspace, calib_data=str(manifest), calib_size=2, precision="int8")
    ctx = BuildContext(options=options, reporter=Reporter(), folder=tmp_path, record=BuildRecord(tmp_path),
                       precision=options.precision)
    assert ctx.calib_size() == 2  # the flag wins


def test_few_labelled_images_still_give_disjoint_nonempty_sets(workspace: dict[str, Path],
                                                               tmp_path: Path) -> None:
    from edgeseg.data.synthetic import write_synthetic
    from edgeseg.stages.context import BuildContext

    write_synthetic(tmp_path / "val3", 3, size=32, split="val")
    options = _options(workspace, precision="fp16", val_data=f"folder:{tmp_path / 'val3'}", val_size=64)
    ctx = BuildContext(options=options, reporter=RecordingReporter(), folder=tmp_path,
                       record=BuildRecord(tmp_path),
                       precision=options.precision)
    splits = ctx.splits()
    assert splits is not None and splits.heldout and splits.tuning
    assert not set(splits.heldout) & set(splits.tuning) and len(splits.heldout) + len(splits.tuning) == 3
    assert any("few images" in n for n in ctx.reporter.notes)  # type: ignore[attr-defined]


def test_a_stop_during_the_export_lets_it_finish_and_be_recorded(workspace: dict[str, Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Export is one native call a signal cannot cut short: its work is kept for the resumed build."""
    import os
    import signal

    from edgeseg.stages.export import ExportStage

    original = ExportStage.run

    def signalled(self: ExportStage, ctx: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the export starts
        return original(self, ctx)

    monkeypatch.setattr(ExportStage, "run", signalled)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            Build(_options(workspace, precision="fp16", out_dir=tmp_path)).run()
    finally:
        signal.signal(signal.SIGINT, previous)
    folder = tmp_path / "tiny"
    stages = read_json(folder / "build.json")["stages"]
    assert stages["export"]["status"] == "done" and "simplify" not in stages
    assert stages["export"]["outputs"]["onnx"]["sha256"] == sha256_file(folder / "model.onnx")


@NO_TRT
def test_from_onnx_inside_a_build_folder_finishes_there_and_says_name_is_unused(int8_build: tuple,
                                                                                 tmp_path: Path) -> None:
    result, _ = int8_build
    copy = tmp_path / "engines" / "tiny"
    shutil.copytree(result.folder, copy)
    reporter = RecordingReporter()
    out = Build(BuildOptions(from_onnx=copy / "model.int8.onnx", name="other", out_dir=tmp_path / "elsewhere",
                             val_data="synthetic::val", val_size=4, min_agreement=0.0, max_miou_drop=100.0),
                reporter).run()
    assert out.folder == copy and not (tmp_path / "elsewhere").exists()
    notes = reporter.notes
    assert any(n.startswith("--name other not used: ") and str(copy) in n for n in notes), notes


@NO_TRT
def test_a_hard_stop_during_a_stage_would_delete_its_unrecorded_graph(
    int8_build: tuple, workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While quantize runs, model.int8.onnx is among the files a second signal deletes
    (tests/test_stopping.py checks that the hard stop deletes them)."""
    import edgeseg.precision.int8 as int8
    from edgeseg import stopping

    result, _ = int8_build
    copy = _copy_without_int8(result, tmp_path)
    seen: list[set[str]] = []

    def watched(src: Any, dst: Any, **kwargs: Any) -> Any:
        seen.append(set(stopping._State.writing))
        raise EdgesegError("stop here")

    monkeypatch.setattr(int8, "quantize_int8", watched)
    with pytest.raises(EdgesegError, match="stop here"):
        Build(_options(workspace, precision="int8", out_dir=tmp_path / "engines")).run()
    assert str(copy / "model.int8.onnx") in seen[0]
    assert str(copy / "model.int8.onnx") not in stopping._State.writing  # only while the stage runs
