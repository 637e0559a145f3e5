"""Segmenter: agreement with a hand-written reference, every CPU backend and input type, bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg import Segmenter, SegResult
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners import TorchRunner


def _frames(n: int, h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _reference_logits(
    model: nn.Module, card: ModelCard, frame: np.ndarray, *, uint8_resize: bool = True
) -> torch.Tensor:
    """Preprocessing spelled out: RGB, resize (of the uint8 frame, as documented, or in float as
    EvalTransform does), /255, -mean, /std; logits resized back to the frame size."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]
    x = x if uint8_resize else x.float()
    x = F.interpolate(x, size=card.input_size, mode="bilinear", align_corners=False, antialias=True).float()
    mean = torch.tensor(card.mean).view(1, 3, 1, 1)
    std = torch.tensor(card.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((x / 255.0 - mean) / std)
    return F.interpolate(logits, size=frame.shape[:2], mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def ort_seg(rt_build: Path) -> Segmenter:
    with Segmenter.load(rt_build, backend="onnxruntime", precision="fp32") as seg:
        yield seg


def test_matches_reference_pipeline(ort_seg: Segmenter, rt_model: nn.Module, rt_card: ModelCard) -> None:
    frame = _frames(1)[0]
    result = ort_seg(frame, logits=True, probs=True)
    ref = _reference_logits(rt_model, rt_card, frame)
    assert isinstance(result, SegResult)
    assert result.mask.shape == (60, 80) and result.mask.dtype == np.uint8
    assert result.logits.shape == (3, 60, 80) and result.logits.dtype == np.float32
    np.testing.assert_allclose(result.logits, ref.numpy(), atol=1e-4)
    np.testing.assert_array_equal(result.mask, ref.argmax(0).numpy())
    np.testing.assert_allclose(result.probs.sum(0), 1.0, atol=1e-5)
    assert ort_seg.info["backend"] == "onnxruntime" and ort_seg.input_size == (32, 48)
    # The class map alone takes the boundary-only upsampling path: same labels.
    np.testing.assert_array_equal(ort_seg(frame).mask, result.mask)
    # And the uint8 resize stays within rounding of the float evaluation transform.
    float_ref = _reference_logits(rt_model, rt_card, frame, uint8_resize=False)
    assert np.abs(result.logits - float_ref.numpy()).max() < 0.05


def test_torch_backend_agrees_with_onnxruntime(
    ort_seg: Segmenter, rt_model: nn.Module, rt_card: ModelCard
) -> None:
    frames = _frames(3, seed=1)
    with Segmenter(TorchRunner(rt_model), rt_card) as torch_seg:
        a = torch_seg(frames, logits=True)
    b = ort_seg(frames, logits=True)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose(ra.logits, rb.logits, atol=1e-4)
        assert (ra.mask == rb.mask).mean() > 0.999


def test_bgr_input_gives_same_result(ort_seg: Segmenter) -> None:
    frame = _frames(1, seed=2)[0]
    rgb = ort_seg(frame)
    bgr = ort_seg(np.ascontiguousarray(frame[..., ::-1]), color="bgr")
    view = ort_seg(frame[..., ::-1], color="bgr")  # a negative-stride view, as cv2 code produces
    np.testing.assert_array_equal(rgb.mask, bgr.mask)
    np.testing.assert_array_equal(rgb.mask, view.mask)


def test_batch_list_tensor_inputs_agree(ort_seg: Segmenter) -> None:
    frames = _frames(3, seed=3)
    singles = [ort_seg(f).mask for f in frames]
    batch = ort_seg(frames)
    as_list = ort_seg(list(frames))
    as_tensor = ort_seg(torch.from_numpy(frames))
    assert isinstance(batch, list) and len(batch) == 3
    for i in range(3):
        np.testing.assert_array_equal(batch[i].mask, singles[i])
        np.testing.assert_array_equal(as_list[i].mask, singles[i])
        np.testing.assert_array_equal(as_tensor[i].mask, singles[i])


def test_mixed_sizes_and_output_sizes(ort_seg: Segmenter) -> None:
    frames = [_frames(1, 31, 17)[0], _frames(1, 31, 17, seed=1)[0], _frames(1, 200, 120)[0]]
    results = ort_seg(frames, overlay=True)
    assert [r.mask.shape for r in results] == [(31, 17), (31, 17), (200, 120)]
    assert [r.overlay.shape for r in results] == [(31, 17, 3), (31, 17, 3), (200, 120, 3)]


def test_overlay_alpha_extremes(ort_seg: Segmenter, rt_card: ModelCard) -> None:
    frame = _frames(1, seed=4)[0]
    clear = ort_seg(frame, overlay=True, alpha=0.0)
    solid = ort_seg(frame, overlay=True, alpha=1.0)
    np.testing.assert_array_equal(clear.overlay, frame)
    palette = np.array(rt_card.palette, dtype=np.uint8)
    np.testing.assert_array_equal(solid.overlay, palette[solid.mask])
    solid_bgr = ort_seg(np.ascontiguousarray(frame[..., ::-1]), color="bgr", overlay=True, alpha=1.0)
    np.testing.assert_array_equal(solid_bgr.overlay, palette[solid.mask][..., ::-1])  # overlay keeps BGR


def test_torch_output_stays_tensor(ort_seg: Segmenter) -> None:
    result = ort_seg(_frames(1)[0], output="torch")
    assert isinstance(result.mask, torch.Tensor) and result.mask.dtype == torch.uint8


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((60, 80), np.uint8), "grayscale"),
        (np.zeros((60, 80, 4), np.uint8), "alpha"),
        (np.zeros((3, 60, 80), np.uint8), "channels-first"),
        (np.zeros((60, 80, 3), np.float64), "uint8"),
        (np.zeros((60, 80, 3), np.int16), "int16"),
        (np.zeros((2, 2, 60, 80, 3), np.uint8), "shape"),
        (np.zeros((0, 80, 3), np.uint8), "empty"),
        ([], "empty list"),
        ("frame.png", "got str"),
        ([np.zeros((60, 80, 3), np.uint8), np.zeros((60, 80, 3), np.float32)], "float32"),
    ],
)
def test_bad_input_is_a_clear_error(ort_seg: Segmenter, bad: object, match: str) -> None:
    with pytest.raises(EdgesegError, match=match):
        ort_seg(bad)


def test_bad_options_are_clear_errors(ort_seg: Segmenter) -> None:
    frame = _frames(1)[0]
    with pytest.raises(EdgesegError, match="color"):
        ort_seg(frame, color="yuv")
    with pytest.raises(EdgesegError, match="alpha"):
        ort_seg(frame, overlay=True, alpha=1.5)


class _DeviceArray:
    """What CuPy/pycuda arrays look like to us: only ``__cuda_array_interface__`` (CUDA array spec v3)."""

    __cuda_array_interface__ = {"shape": (60, 80, 3), "typestr": "|u1", "data": (0, False), "version": 3}


def test_gpu_array_rejected_on_cpu_segmenter(ort_seg: Segmenter) -> None:
    with pytest.raises(EdgesegError, match="GPU array"):
        ort_seg(_DeviceArray())


def test_auto_falls_back_to_onnxruntime_and_says_why(rt_build: Path) -> None:
    with Segmenter.load(rt_build) as seg:
        assert seg.info["backend"] == "onnxruntime"
        assert seg.info["precision"] == "fp32"  # what build.json asked for
        assert "tensorrt" in seg.info["skipped"]
        # On the CPU the session must not busy-wait: pipeline stages share the cores with it.
        options = seg.runner.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_forced_tensorrt_without_engine_is_a_clear_error(rt_build: Path) -> None:
    with pytest.raises(EdgesegError, match="engine|tensorrt"):
        Segmenter.load(rt_build, backend="tensorrt")


def test_fp16_graph_runs_unoptimised_on_cpu(rt_build: Path, ort_seg: Segmenter) -> None:
    frame = _frames(1, seed=5)[0]
    with Segmenter.load(rt_build, precision="fp16") as seg:
        assert seg.info["source"].endswith("model.fp16.onnx")
        assert seg.runner.graph_optimization == "disabled"
        fp16, fp32 = seg(frame, logits=True), ort_seg(frame, logits=True)
    np.testing.assert_allclose(fp16.logits, fp32.logits, atol=0.05)
    assert (fp16.mask == fp32.mask).mean() > 0.95


def test_load_onnx_file_directly_and_missing_precision(rt_build: Path) -> None:
    with Segmenter.load(rt_build / "model.fp16.onnx") as seg:
        assert seg.info["precision"] == "fp16"
    with pytest.raises(EdgesegError, match="int8"):
        Segmenter.load(rt_build, precision="int8")
    with pytest.raises(EdgesegError, match="card.json"):
        Segmenter.load(rt_build.parent)


def test_static_batch_labels_graph(rt_static_build: Callable[..., Path], ort_seg: Segmenter) -> None:
    """A static batch-2 graph with an argmax output: 3 frames are padded to 2+2; masks still agree."""
    build = rt_static_build(2, argmax=True)
    frames = _frames(3, 32, 48, seed=6)  # at the input size, so labels need no resize
    with Segmenter.load(build) as seg:
        assert seg.fixed_batch == 2
        results = seg(frames)
        with pytest.raises(EdgesegError, match="argmax"):
            seg(frames[0], logits=True)
    for r, ref in zip(results, ort_seg(frames), strict=True):
        assert r.mask.dtype == np.uint8
        np.testing.assert_array_equal(r.mask, ref.mask)


def test_torch_bundle_and_fused(rt_bundle: Path) -> None:
    """A .pt bundle runs on the torch backend; fused=True swaps in the fused DDC op with the same output."""
    frame = _frames(1, 48, 80, seed=7)[0]
    with Segmenter.load(rt_bundle) as seg:
        assert seg.info["backend"] == "torch" and seg.input_size == (64, 64)
        plain = seg(frame, logits=True)
    from edgeseg.ops import extension_available

    if not extension_available():  # the op's own tests cover building it; here we need it built
        with pytest.raises(EdgesegError, match="fused"):
            Segmenter.load(rt_bundle, fused=True)
        return
    with Segmenter.load(rt_bundle, fused=True) as seg:
        assert seg.runner.name.startswith("torch+fused")
        fused = seg(frame, logits=True)
    np.testing.assert_allclose(fused.logits, plain.logits, atol=1e-3)
    assert (fused.mask == plain.mask).mean() > 0.999
    with pytest.raises(EdgesegError, match="torch backend only"):
        Segmenter.load(rt_bundle, backend="onnxruntime")


def test_one_segmenter_shared_by_threads(ort_seg: Segmenter) -> None:
    """The documented thread-safety: concurrent calls on one Segmenter give each caller its own result."""
    import threading

    frames = _frames(6, seed=8)
    expected = [ort_seg(f).mask for f in frames]
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = ort_seg(frames[i]).mask
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(6):
        np.testing.assert_array_equal(got[i], expected[i])


def test_host_frames_are_viewed_not_copied() -> None:
    from edgeseg.runtime.frames import as_frame_batch

    batch = _frames(2)
    groups, single = as_frame_batch(batch)
    assert not single and groups[0].data_ptr() == batch.ctypes.data  # torch.from_numpy view
