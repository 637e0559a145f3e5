"""`edgeseg validate` on a real build: its own held-out set by default, other data to another report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeseg.build_folder import read_report
from edgeseg.cli import main


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from edgeseg.checkpoint import ModelCard, save_model
    from edgeseg.data.synthetic import SYNTHETIC_CLASSES
    from edgeseg.models import build_model
    from edgeseg.stages import Build, BuildOptions

    root = tmp_path_factory.mktemp("vcli")
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=7, width=0.25).eval()
    card = ModelCard(preset="dbmsnet_r18_os16", num_classes=7, overrides={"width": 0.25},
                     class_names=list(SYNTHETIC_CLASSES), input_size=(32, 32), dataset="synthetic")
    save_model(root / "tiny.pt", model, card)
    result = Build(BuildOptions(model=str(root / "tiny.pt"), out_dir=root / "engines", precision="fp32",
                                val_data="synthetic::val", val_size=3, min_agreement=0.0)).run()
    return result.folder


def test_default_is_the_builds_own_heldout_set(built: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    build = Path(shutil.copytree(built, tmp_path / "b"))
    before = read_report(build)
    assert before is not None
    main(["validate", "-b", str(build), "--json"])
    report = json.loads(capsys.readouterr().out)
    # The same held-out images the build judged on, not the dataset's train split.
    assert report["data"]["source"] == "synthetic::val" and report["data"]["judged_on"] == "heldout"
    assert report["num_images"] == len(before["splits"]["heldout"])
    assert report["splits"] == before["splits"]
    assert read_report(build)["splits"] == before["splits"]  # and the next run still finds it


def test_other_data_goes_to_its_own_report(built: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    build = Path(shutil.copytree(built, tmp_path / "b"))
    own = (build / "report.json").read_bytes()
    main(["validate", "-b", str(build), "--data", "synthetic::train", "-n", "2", "--json"])
    capsys.readouterr()
    assert (build / "report.json").read_bytes() == own
    other = read_report(build, "report.synthetic__train.json")
    assert other is not None and other["num_images"] == 2 and other["data"]["source"] == "synthetic::train"


def test_no_recorded_heldout_set_is_a_one_line_error(built: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    build = Path(shutil.copytree(built, tmp_path / "b"))
    (build / "report.json").unlink()
    with pytest.raises(SystemExit) as info:
        main(["validate", "-b", str(build)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "records no held-out evaluation set" in err and "\n" not in err
