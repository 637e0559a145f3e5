"""ModelCard: every field is checked, and a bad one is one line naming the card's file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeseg._io import write_json
from edgeseg.checkpoint import ModelCard, load_card
from edgeseg.errors import EdgesegError

GOOD: dict[str, Any] = {
    "preset": "dbmsnet_r18_os16",
    "num_classes": 3,
    "class_names": ["bg", "road", "car"],
    "palette": [[0, 0, 0], [128, 64, 128], [0, 0, 142]],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "input_size": [64, 96],
}

BAD: list[tuple[str, Any, str]] = [
    ("preset", "", "a non-empty model preset name"),
    ("preset", 3, "a non-empty model preset name"),
    ("num_classes", 0, r"an integer >= 1"),
    ("num_classes", 2.5, r"an integer >= 1"),
    ("num_classes", True, r"an integer >= 1"),
    ("num_classes", "3", r"an integer >= 1"),
    ("overrides", ["width", 0.5], "an object of config fields"),
    ("class_names", ["bg", "road"], r"a list of 3 names \(num_classes\) or empty"),
    ("class_names", ["bg", "road", 7], r"a list of 3 names \(num_classes\) or empty"),
    ("palette", [[0, 0, 0]], r"a list of 3 RGB triples in 0\.\.255"),
    ("palette", [[0, 0, 0], [0, 0, 256], [1, 2, 3]], r"a list of 3 RGB triples in 0\.\.255"),
    ("palette", [[0, 0], [0, 0, 0], [1, 2, 3]], r"a list of 3 RGB triples in 0\.\.255"),
    ("mean", [0.5], r"3 finite numbers \(R, G, B\), got \[0\.5\]"),
    ("mean", [0.5, 0.5, float("nan")], r"3 finite numbers \(R, G, B\)"),
    ("mean", "0.5,0.5,0.5", r"3 finite numbers \(R, G, B\)"),
    ("std", [0.2, 0.0, 0.2], r"3 finite numbers > 0 \(R, G, B\), got \[0\.2, 0\.0, 0\.2\]"),
    ("std", [0.2, -0.1, 0.2], r"3 finite numbers > 0"),
    ("std", [0.2, float("inf"), 0.2], r"3 finite numbers > 0"),
    ("std", [0.2, 0.2], r"3 finite numbers > 0"),
    ("input_size", [0, 64], r"2 integers >= 1 \(H, W\)"),
    ("input_size", [64], r"2 integers >= 1 \(H, W\)"),
    ("input_size", [64.5, 64], r"2 integers >= 1 \(H, W\)"),
    ("ignore_index", "255", "an integer"),
    ("dataset", 3, "a string"),
    ("metrics", {"miou": "high"}, "an object of numbers"),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_field_is_one_line_naming_file_and_field(
    tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**GOOD, field: value}))  # json.dumps writes NaN/Infinity, as old files hold
    with pytest.raises(EdgesegError, match=rf"^{path}: field '{field}' must be {expected}") as info:
        load_card(path)
    assert "\n" not in str(info.value)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(EdgesegError, match=r"^model card: field 'std' must be 3 finite numbers > 0"):
        ModelCard(preset="tiny", num_classes=2, std=(0.0, 0.0, 0.0))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2, 3], "a model card must be an object of fields, got list"),
        ({"num_classes": 3}, r"model card lacks field\(s\) \['preset'\]"),
        ({**GOOD, "colour": "red"}, r"model card has unknown fields \['colour'\]"),
    ],
    ids=["not-an-object", "missing-preset", "unknown-field"],
)
def test_card_shape_errors_name_the_file(tmp_path: Path, content: Any, expected: str) -> None:
    path = tmp_path / "card.json"
    write_json(path, content)
    with pytest.raises(EdgesegError, match=rf"^{path}: {expected}"):
        load_card(path)


def test_good_card_round_trips_and_normalises(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    # NumPy scalars, as a dataset's palette or a transform's statistics may hold, are numbers too.
    card = ModelCard(**{**GOOD, "mean": (0, np.float32(0.5), 1), "palette": [[np.uint8(0)] * 3] * 3,
                        "metrics": {"miou": np.float32(75.5), "pa": None}})
    assert card.mean == (0.0, 0.5, 1.0) and isinstance(card.mean, tuple)
    assert type(card.palette[0][0]) is int
    assert card.input_size == (64, 96)
    write_json(path, card.to_dict())
    assert load_card(path) == card
    assert "source" not in card.to_dict()  # how errors name a card is not part of it


def test_build_folder_with_zero_std_is_refused(rt_build: Path, tmp_path: Path) -> None:
    # std = 0 used to be accepted: report.json then held -Infinity, DeepStream divided by zero.
    from edgeseg.serve import export_deepstream

    build = tmp_path / "tiny"
    shutil.copytree(rt_build, build)
    card = json.loads((build / "card.json").read_text())
    write_json(build / "card.json", {**card, "std": [0.2, 0.0, 0.2]})
    with pytest.raises(EdgesegError, match=r"field 'std' must be 3 finite numbers > 0"):
        export_deepstream(build, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
