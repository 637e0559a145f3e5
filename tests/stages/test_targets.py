"""Target profiles (engines/targets/*.toml): loading, strict keys, and how they fill build options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from edgeseg._io import read_json
from edgeseg.cli import main
from edgeseg.errors import EdgesegError
from edgeseg.export.trt_compat import TRT_OPSET_RANGE
from edgeseg.stages import Build, BuildOptions, finish_hint
from edgeseg.stages.targets import TARGETS_DIR, list_targets, load_target, machine_problems
from edgeseg.trt.metadata import RuntimeInfo

SHIPPED = list_targets()


def _profile(tmp_path: Path, text: str, name: str = "custom") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text('description = "test device"\ntensorrt = "10.3"\ncompute_capability = "8.7"\n' + text)
    return path


def test_the_documented_profiles_are_shipped() -> None:
    assert {"jetson-orin-nano", "jetson-agx-orin", "desktop-ampere", "desktop-hopper"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_loads_and_fits_its_tensorrt(name: str) -> None:
    profile = load_target(name)
    assert profile.path == TARGETS_DIR / f"{name}.toml" and profile.description
    build = profile.build
    assert build.precision in ("fp32", "fp16", "int8") and build.opset is not None
    if profile.tensorrt_major == 10:
        assert TRT_OPSET_RANGE[0] <= build.opset <= TRT_OPSET_RANGE[1] == 20
    # A DLA core only where the target has one; Orin Nano has none, AGX Orin two.
    if build.dla_core is not None:
        assert 0 <= build.dla_core < profile.dla_cores
    assert (build.batch is None) != (build.shapes is None)  # static or dynamic, said once
    # The options a profile yields pass BuildOptions' own checks.
    BuildOptions(target=name)


def test_orin_facts() -> None:
    nano, agx = load_target("jetson-orin-nano"), load_target("jetson-agx-orin")
    assert (nano.tensorrt, nano.compute_capability, nano.dla_cores) == ("10.3", "8.7", 0)
    assert (agx.tensorrt, agx.compute_capability, agx.dla_cores) == ("10.3", "8.7", 2)


@pytest.mark.parametrize("text, key", [
    ("dla_core = 0\n", "dla_core"),                           # belongs in [build]
    ("[build]\nprecison = 'int8'\n", "build.precison"),       # misspelt
])
def test_unknown_key_names_the_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _profile(tmp_path, text)
    with pytest.raises(EdgesegError, match=f"unknown key {key}") as info:
        load_target(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("[build]\nopset = 21\n", "build.opset must be 17..20"),
    ("[build]\ndla_core = 0\n", "has no DLA cores"),
    ("dla_cores = 2\n[build]\ndla_core = 2\n", "has DLA cores 0..1"),
    ("[build]\nbatch = 2\nshapes = [1, 2, 4]\n", "not both"),
    ("[build]\nshapes = [4, 2, 8]\n", "min <= opt <= max"),
    ("[build]\nworkspace = 'big'\n", "build.workspace must be a float"),
    ("[build]\nbatch = true\n", "build.batch must be a int"),
    ("[build]\ninput = [512]\n", "build.input must be a list of 2 integers"),
    ("[build\n", "not a valid TOML"),
])
def test_bad_values_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _profile(tmp_path, text)
    with pytest.raises(EdgesegError, match=message) as info:
        load_target(path)
    assert str(path) in str(info.value)


def test_missing_and_unknown_profiles(tmp_path: Path) -> None:
    with pytest.raises(EdgesegError, match="no such profile.*jetson-orin-nano"):
        load_target("jetson-orin-nanoo")
    with pytest.raises(EdgesegError, match="file not found"):
        load_target(tmp_path / "nope.toml")
    (tmp_path / "old.toml").write_text('description = "x"\ntensorrt = "8.6"\ncompute_capability = "8.7"\n')
    with pytest.raises(EdgesegError, match="release line >= 10"):
        load_target(tmp_path / "old.toml")


def test_profile_fills_defaults_and_explicit_options_win() -> None:
    # No target: the built-in defaults.
    plain = BuildOptions()
    assert (plain.precision, plain.batch, plain.shapes, plain.opset) == (None, 1, None, 18)
    assert plain.workspace is None and plain.target is None
    nano = BuildOptions(target="jetson-orin-nano")
    assert (nano.precision, nano.workspace, nano.batch, nano.opset) == ("int8", 1.0, 1, 18)
    assert nano.dla_core is None
    mine = BuildOptions(target="jetson-orin-nano", precision="fp16", workspace=2.5, opset=20)
    assert (mine.precision, mine.workspace, mine.opset) == ("fp16", 2.5, 20)
    assert mine.to_dict()["target"] == "jetson-orin-nano"


def test_batch_and_shapes_are_one_choice() -> None:
    assert BuildOptions(target="desktop-ampere").shapes == (1, 4, 8)
    static = BuildOptions(target="desktop-ampere", batch=2)
    assert (static.batch, static.shapes) == (2, None)
    dynamic = BuildOptions(target="jetson-orin-nano", shapes=(1, 2, 4))
    assert (dynamic.batch, dynamic.shapes) == (1, (1, 2, 4))


def test_from_onnx_keeps_the_graph_precision(tmp_path: Path) -> None:
    options = BuildOptions(target="jetson-agx-orin-dla", from_onnx=tmp_path / "model.int8.onnx")
    assert options.precision is None and options.dla_core == 0


def test_explicit_dla_core_must_exist_on_the_target() -> None:
    assert BuildOptions(target="jetson-agx-orin", dla_core=1).dla_core == 1
    with pytest.raises(EdgesegError, match="--dla-core 2: target jetson-agx-orin .* has DLA cores 0..1"):
        BuildOptions(target="jetson-agx-orin", dla_core=2)
    with pytest.raises(EdgesegError, match="--dla-core 0: target jetson-orin-nano .* has no DLA cores"):
        BuildOptions(target="jetson-orin-nano", dla_core=0)


def test_machine_problems() -> None:
    nano, ampere = load_target("jetson-orin-nano"), load_target("desktop-ampere")
    assert machine_problems(nano, RuntimeInfo("10.3.0.30", "Orin", "8.7")) == []
    problems = machine_problems(nano, RuntimeInfo("10.13.0.35", "NVIDIA GeForce RTX 3090", "8.6"))
    assert len(problems) == 2 and "TensorRT 10.13.0.35" in problems[0] and "8.6" in problems[1]
    assert machine_problems(ampere, RuntimeInfo("10.13.0.35", "NVIDIA GeForce RTX 3090", "8.6")) == []
    assert len(machine_problems(ampere, RuntimeInfo("11.1.0", "NVIDIA GeForce RTX 3090", "8.6"))) == 1


def test_finish_hint_carries_the_target() -> None:
    path = Path("engines/x/model.int8.onnx")
    assert finish_hint(path) == f"edgeseg build --from-onnx {path}"
    assert finish_hint(path, "jetson-orin-nano").endswith(f"{path} --target jetson-orin-nano")


class _Captured(Exception):
    pass


def test_cli_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI leaves unset options None, so the profile fills them; given ones beat it."""
    import edgeseg.stages

    seen: list[BuildOptions] = []

    class CapturingBuild:
        def __init__(self, options: BuildOptions, reporter: Any = None) -> None:
            seen.append(options)
            raise _Captured

    monkeypatch.setattr(edgeseg.stages, "Build", CapturingBuild)
    with pytest.raises(_Captured):
        main(["build", "--target", "desktop-hopper"])
    with pytest.raises(_Captured):
        main(["build", "--target", "desktop-hopper", "--batch", "2", "--workspace", "3", "-p", "fp16"])
    # `edgeseg export` takes the same profile for the export-side options.
    with pytest.raises(_Captured):
        main(["export", "--target", "desktop-hopper"])
    with pytest.raises(_Captured):
        main(["export", "-t", "jetson-orin-nano", "--opset", "17"])
    resolved = [(o.precision, o.workspace, o.shapes, o.batch, o.opset, o.target) for o in seen]
    hopper = load_target("desktop-hopper").build
    assert resolved[0] == ("int8", 8.0, (1, 8, 32), 1, hopper.opset, "desktop-hopper")
    assert resolved[1] == ("fp16", 3.0, None, 2, hopper.opset, "desktop-hopper")
    assert resolved[2][2:] == ((1, 8, 32), 1, hopper.opset, "desktop-hopper")
    assert resolved[3][2:] == (None, 1, 17, "jetson-orin-nano")


def test_cli_list_targets(capsys: pytest.CaptureFixture) -> None:
    main(["build", "--list-targets"])
    err = capsys.readouterr().err
    assert all(name in err for name in SHIPPED)


def test_cli_bad_target_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "--target", "no-such-device"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error:") and "no such profile" in err and "\n" not in err


def test_build_records_the_target_and_uses_its_values(tmp_path: Path) -> None:
    """Export + simplify of a tiny model: the profile's opset and input reach the graph and build.json."""
    import onnx

    from edgeseg.checkpoint import ModelCard, save_model
    from edgeseg.models import build_model

    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=3, width=0.25).eval()
    save_model(tmp_path / "tiny.pt", model, ModelCard(preset="dbmsnet_r18_os16", num_classes=3,
                                                      overrides={"width": 0.25}, input_size=(64, 64)))
    profile = _profile(tmp_path, "[build]\nopset = 19\ninput = [32, 48]\nbatch = 2\n", name="edge")
    options = BuildOptions(model=str(tmp_path / "tiny.pt"), out_dir=tmp_path / "engines", target=str(profile))
    result = Build(options).run(until="simplify")
    recorded = read_json(result.folder / "build.json")["options"]
    assert recorded["target"] == str(profile) and recorded["opset"] == 19 and recorded["batch"] == 2
    graph = onnx.load(result.deploy_onnx)
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 19
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 32, 48]


def test_dla_with_a_batch_range_is_refused_before_any_work() -> None:
    with pytest.raises(EdgesegError, match="--shapes 1,4,8 with --dla-core 0: DLA engines need one batch"):
        BuildOptions(dla_core=0, shapes=(1, 4, 8))
    assert BuildOptions(dla_core=0, shapes=(4, 4, 4)).shapes == (4, 4, 4)
    assert BuildOptions(target="jetson-agx-orin-dla").dla_core == 0  # the shipped DLA profile is static
