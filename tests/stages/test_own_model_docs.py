"""docs/your-own-model.md: every recipe, run as written, in order, in one scratch folder.

Python blocks run in one namespace; in bash blocks, ``edgeseg ...`` lines go through the CLI's
``main`` and other lines through the shell. The only things prepared beforehand are what a reader
brings: a folder of images and a trained bundle (``runs/city/model.pt``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg._io import read_json
from edgeseg.checkpoint import ModelCard, save_model
from edgeseg.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "your-own-model.md"


def _recipes() -> list[tuple[str, str]]:
    return re.findall(r"```(python|bash)\n(.*?)```", DOC.read_text(), re.S)


def _prepare(root: Path) -> None:
    from edgeseg.models import build_model

    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(images / f"{i}.png")
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=7, width=0.25).eval()
    card = ModelCard(preset="dbmsnet_r18_os16", num_classes=7, overrides={"width": 0.25}, input_size=(64, 64))
    (root / "runs" / "city").mkdir(parents=True)
    save_model(root / "runs" / "city" / "model.pt", model, card)


def test_the_doc_has_a_recipe_for_every_route() -> None:
    text = "\n".join(code for _, code in _recipes())
    for route in ("--model dbmsnet_r18_os16", "--model runs/city/model.pt", "torch.export.save",
                  "--model twoheads.pt2", "edgeseg.build(BinaryNHWC()", "--model softmax_nhwc.onnx",
                  "--card card.yaml", "--from-onnx"):
        assert route in text, route


def test_every_recipe_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": "recipe"}
    for i, (lang, code) in enumerate(_recipes()):
        if lang == "python":
            exec(compile(code, f"{DOC.name}, block {i}", "exec"), namespace)
            continue
        for line in code.splitlines():
            if line.startswith("edgeseg "):
                main(shlex.split(line, comments=True)[1:])
            elif line.strip():
                subprocess.run(line, shell=True, check=True)
    engines = tmp_path / "engines"
    for folder, graph in (("dbmsnet_r18_os16", "model.fp16.onnx"), ("model", "model.fp16.onnx"),
                          ("twoheads", "model.int8.onnx"), ("binary", "model.fp16.onnx"),
                          ("softmax_nhwc", "model.int8.onnx"), ("with_card", "model.fp16.onnx")):
        assert (engines / folder / graph).is_file(), f"{folder}/{graph}"
    assert read_json(engines / "twoheads" / "card.json")["input_size"] == [64, 96]
    binary = read_json(engines / "binary" / "card.json")
    assert binary["num_classes"] == 2 and binary["std"] == [1.0, 1.0, 1.0]
    card = read_json(engines / "with_card" / "card.json")
    assert card["class_names"] == ["road", "car", "tree", "sky"] and card["input_size"] == [48, 48]
