"""A Hugging Face SegFormer through `edgeseg.build`, the model issue 12's user brought.

The network is the real ``transformers`` class, made from a small config with random weights (no
download). What is asserted: its ``SemanticSegmenterOutput`` is read through ``logits``, the
1/4-resolution logits are upsampled bilinearly to the input inside the graph, the card has the
config's class count, and a folder of unlabelled images is judged against the FP32 reference on a
held-out draw the report marks as unlabelled. About 10 s on one CPU core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import SegformerConfig, SegformerForSemanticSegmentation
from transformers.modeling_outputs import SemanticSegmenterOutput

import edgeseg
from edgeseg._io import read_json

CLASSES = 5
SIZE = (64, 64)


@pytest.fixture(scope="module")
def segformer() -> SegformerForSemanticSegmentation:
    # Two encoder stages instead of four, narrow: the architecture (overlapping patch embeddings,
    # efficient self-attention, the all-MLP decoder at 1/4) is the real one. The default init
    # (std 0.02) gives logits of about 1e-3; std 0.3 gives a trained model's scale (std about 1), so
    # the tolerances below mean something.
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1],
                             mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=CLASSES,
                             initializer_range=0.3)
    torch.manual_seed(0)
    return SegformerForSemanticSegmentation(config).eval()


@pytest.fixture(scope="module")
def built(segformer: SegformerForSemanticSegmentation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("segformer")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # unlabelled, and not at the model's size: the build resizes them
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(images / f"{i}.png")
    torch.set_num_threads(1)
    result = edgeseg.build(segformer, input_size=SIZE, precision="fp16", out_dir=root / "engines",
                           calib_data=str(images), val_size=6, name="segformer")
    return result.folder


def test_the_output_is_a_quarter_resolution_semantic_segmenter_output(
        segformer: SegformerForSemanticSegmentation, built: Path) -> None:
    with torch.no_grad():
        out = segformer(torch.zeros(1, 3, *SIZE))
    assert isinstance(out, SemanticSegmenterOutput)
    assert tuple(out.logits.shape) == (1, CLASSES, SIZE[0] // 4, SIZE[1] // 4)
    source = read_json(built / "build.json")["stages"]["card"]["results"]["source"]
    # Read through its `logits` attribute (no --output-name key), as NCHW logits at 1/4.
    assert source["output"] == "logits, NCHW"
    assert source["output_shape"] == [1, CLASSES, SIZE[0] // 4, SIZE[1] // 4]


def test_the_graph_upsamples_the_logits_bilinearly_to_the_input(
        segformer: SegformerForSemanticSegmentation, built: Path) -> None:
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 3, *SIZE)).astype(np.float32))
    with torch.no_grad():
        low = segformer(x).logits
    expected = F.interpolate(low, size=SIZE, mode="bilinear", align_corners=False).numpy()
    for name, atol in (("model.onnx", 1e-4), ("model.fp16.onnx", 5e-2)):
        session = ort.InferenceSession(str(built / name), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"images": x.numpy()})
        assert logits.shape == (1, CLASSES, *SIZE), name
        np.testing.assert_allclose(logits, expected, atol=atol, err_msg=name)
    # Nearest-neighbour upsampling would give another map, which the comparison above tells apart.
    assert np.abs(F.interpolate(low, size=SIZE, mode="nearest").numpy() - expected).max() > 0.1


def test_the_card_and_the_unlabelled_heldout_report(built: Path) -> None:
    card = read_json(built / "card.json")
    assert card["num_classes"] == CLASSES and card["input_size"] == list(SIZE)
    assert card["preset"] == "module:SegformerForSemanticSegmentation"
    report = read_json(built / "report.json")
    # No labels: the FP32 reference's own prediction is the ground truth, judged on the held-out draw.
    assert report["data"]["ground_truth"] == "reference" and report["data"]["judged_on"] == "heldout"
    splits = report["splits"]
    assert splits["labelled"] is False and splits["heldout"]
    assert not set(splits["heldout"]) & (set(splits["tuning"]) | set(splits["calibration"]))
    candidates = report["candidates"]
    assert candidates and all(c["heldout"]["pixel_agreement"] is not None for c in candidates)
