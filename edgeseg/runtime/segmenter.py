"""``Segmenter``: frames in, class maps (and optionally logits, probabilities, overlays) out.

>>> seg = Segmenter.load("engines/demo")              # best backend available here
>>> result = seg(frame_rgb_uint8)                      # one HxWx3 frame → SegResult
>>> results = seg(batch_bgr, color="bgr", overlay=True)  # NxHxWx3 → list[SegResult]

Preprocessing comes from the model's own card (see :mod:`edgeseg.runtime.processing`); the
backend sits behind the runner interface (see :mod:`edgeseg.runtime.backends`). Streams (videos,
cameras, iterables of frames) are the video layer's job: :func:`edgeseg.video.stream`.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeseg.build_folder import BUILD_FILE, BuildRecord
from edgeseg.checkpoint import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runners.base import BaseRunner, TensorMeta
from edgeseg.runtime.frames import COLOR_ORDERS, as_frame_batch
from edgeseg.runtime.processing import (
    OUTPUT_KINDS,
    Colorizer,
    Postprocessor,
    Preprocessor,
    default_palette,
    to_output,
)

__all__ = ["Segmenter", "SegResult"]


@dataclass
class SegResult:
    """The segmentation of one frame, at the frame's own size.

    Attributes:
        mask: ``(H, W)`` class map, uint8 (int32 for models with more than 256 classes).
        logits: ``(K, H, W)`` float32 class scores, when asked for.
        probs: ``(K, H, W)`` float32 softmax probabilities, when asked for.
        overlay: ``(H, W, 3)`` uint8 frame with class colours blended in, in the frame's channel
            order, when asked for.

    Arrays are numpy by default, or torch tensors on the Segmenter's device with ``output="torch"``.
    """

    mask: Any
    logits: Any = None
    probs: Any = None
    overlay: Any = None


class Segmenter:
    """Runs a deployed segmentation model on raw frames.

    Most users call :meth:`load`; the constructor takes an existing runner (e.g. a
    :class:`~edgeseg.runners.TorchRunner` around a model in memory).

    Thread safety: one Segmenter may be shared by several threads. Calls into the backend are
    serialised by an internal lock (a TensorRT execution context or an ONNX Runtime session must not
    run two inferences at once through one object); pre- and postprocessing run outside the lock, so
    threads still overlap them with inference. For truly parallel inference create one Segmenter
    per thread, each with its own runner.

    Args:
        runner: the backend; activated here if it is not active yet, and deactivated by
            :meth:`close`.
        card: the model card (mean/std, input size, the input's layout and channel order, class
            names, palette).
        device: where pre/postprocessing run and where GPU-array inputs are accepted.
            Defaults to ``"cpu"``.
        max_batch: most frames sent to the backend at once when its batch dimension is dynamic.
            Defaults to no limit (a static batch dimension always wins).
        info: descriptive fields (backend, precision, source file, skipped backends) for reports.
        input_stats: the calibration images' pixel statistics (build.json ``input_stats``); the
            first frames are compared with them and a mismatch (BGR frames, 0..1 values) is
            warned about once. Defaults to none (no check).
    """

    def __init__(
        self,
        runner: BaseRunner,
        card: ModelCard,
        *,
        device: str | torch.device = "cpu",
        max_batch: int | None = None,
        info: dict[str, Any] | None = None,
        input_stats: dict[str, Any] | None = None,
    ) -> None:
        self.runner = runner
        self._expected = input_stats
        self.card = card
        self.device = torch.device(device)
        self.info: dict[str, Any] = dict(info or {})
        if not runner.is_active:
            runner.activate()
        meta = _image_input(runner, card)
        self.input_name = meta.name
        n, h, w = (meta.shape[0], *_spatial(meta.shape, card.layout))
        self.fixed_batch = n if isinstance(n, int) and n > 0 else None
        self.max_batch = self.fixed_batch or max_batch
        size = card.input_size
        self.input_size = (
            h if isinstance(h, int) and h > 0 else int(size[0]),
            w if isinstance(w, int) and w > 0 else int(size[1]),
        )
        self.num_classes = card.num_classes
        self.class_names = list(card.class_names)
        palette = card.palette if len(card.palette) >= card.num_classes else default_palette(card.num_classes)
        self.palette = [list(map(int, rgb)) for rgb in palette]
        self._pre = Preprocessor(card.mean, card.std, self.input_size, self.device, layout=card.layout,
                                 channels=card.channels)
        self.colorizer = Colorizer(self.palette, self.device)
        self._post = Postprocessor(self.num_classes, self.colorizer, runner.name)
        self._lock = threading.Lock()
        self.info.setdefault("backend", runner.backend)
        self.info.update(device=str(self.device), input_size=list(self.input_size))

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backend: str = "auto",
        *,
        precision: str | None = None,
        fused: bool = False,
        device: str | None = None,
        max_batch: int | None = None,
    ) -> Segmenter:
        """Open a build directory, an engine/ONNX file in one, or a ``.pt`` bundle.

        Args:
            path: build directory (``engines/<name>``), ``.engine``, ``.onnx`` or ``.pt``.
            backend: ``"auto"`` (TensorRT → ONNX Runtime → PyTorch, first that can run here),
                ``"tensorrt"``, ``"onnxruntime"`` or ``"torch"``. Defaults to auto.
            precision: ``"fp32"``, ``"fp16"`` or ``"int8"``. Defaults to the build's own.
            fused: torch backend: use ``model.fuse()`` (fused DDC op). Defaults to False.
            device: torch backend: ``"cpu"``/``"cuda"``. Defaults to CUDA when available.
            max_batch: cap on frames per backend call for dynamic-batch models.

        Returns:
            A ready Segmenter; ``seg.info`` says which backend was chosen and why others were not.
        """
        from edgeseg.runtime.backends import open_backend

        opened = open_backend(path, backend, precision=precision, fused=fused, device=device)
        info = {
            "backend": opened.backend,
            "precision": opened.precision,
            "source": str(opened.source),
            "skipped": opened.skipped,
        }
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        record = BuildRecord(folder) if (folder / BUILD_FILE).is_file() else None
        stats = record.meta.get("input_stats") if record is not None else None
        try:
            return cls(opened.runner, opened.card, device=opened.device, max_batch=max_batch, info=info,
                       input_stats=stats)
        except BaseException:
            opened.runner.deactivate()
            raise

    def close(self) -> None:
        """Release the backend (engine, session, model)."""
        self.runner.deactivate()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Segmenter(backend={self.info.get('backend')}, precision={self.info.get('precision')}, "
            f"input_size={self.input_size}, classes={self.num_classes}, device={self.device})"
        )

    # --- the three stages (public so pipelines and benchmarks can time and overlap them) ------
    def preprocess(self, frames: torch.Tensor, color: str = "rgb") -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 frames on :attr:`device` → network input: ``(N, 3, h, w)``, or
        ``(N, h, w, 3)`` when the card's ``layout`` is nhwc, in the card's channel order."""
        _check_color(color)
        if self._expected is not None:  # once, on the first frames
            _warn_contract(frames, color, self._expected)
            self._expected = None
        return self._pre(frames, color)

    def infer(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the backend on a preprocessed batch, in chunks its batch dimension accepts.

        Returns:
            The raw output on :attr:`device`: ``(N, K, h, w)`` logits, or ``(N, h, w)`` labels for
            a graph exported with ``--output argmax``.
        """
        step = self.max_batch or inputs.shape[0]
        outs = []
        for start in range(0, inputs.shape[0], step):
            chunk = inputs[start : start + step]
            n = chunk.shape[0]
            if self.fixed_batch is not None and n < self.fixed_batch:
                # A static-batch engine/graph needs exactly its batch: pad, then drop the padding.
                pad = chunk.new_zeros((self.fixed_batch - n, *chunk.shape[1:]))
                chunk = torch.cat([chunk, pad])
            outs.append(self._run(chunk)[:n])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _run(self, chunk: torch.Tensor) -> torch.Tensor:
        # ONNX Runtime reads host memory; the other runners take tensors wherever they live.
        host = self.runner.backend == "onnxrt" or chunk.device.type == "cpu"
        feed = {self.input_name: chunk.cpu().numpy() if host else chunk}
        with self._lock:
            out = self.runner.infer(feed)
        # Runners return arrays the caller owns (TensorRT copies out of its reused buffers), so a
        # pipeline may start the next inference before this result is postprocessed.
        return torch.as_tensor(_model_output(out, self.runner.name), device=self.device)

    def postprocess(
        self,
        raw: torch.Tensor,
        frames: torch.Tensor,
        *,
        color: str = "rgb",
        overlay: bool = False,
        alpha: float = 0.5,
        logits: bool = False,
        probs: bool = False,
        output: str = "numpy",
    ) -> list[SegResult]:
        """Map a raw network output back onto its frames.

        Args:
            raw: output of :meth:`infer` for these frames.
            frames: the ``(N, H, W, 3)`` uint8 frames (needed for their size and for overlays).
            color: channel order of ``frames``; overlays keep it.
            overlay: also return the frame with class colours blended in.
            alpha: overlay opacity of the class colours. Defaults to 0.5.
            logits: also return per-class scores at frame size.
            probs: also return softmax probabilities at frame size.
            output: ``"numpy"`` (host arrays) or ``"torch"`` (tensors on :attr:`device`).
        """
        _check_color(color)
        if output not in OUTPUT_KINDS:
            raise EdgesegError(f"output must be 'numpy' or 'torch', got {output!r}")
        maps = self._post(raw, frames, color=color, overlay=overlay, alpha=alpha, logits=logits, probs=probs)
        return [
            SegResult(**{key: to_output(None if m is None else m[i], output) for key, m in maps.items()})
            for i in range(raw.shape[0])
        ]

    # --- convenience ----------------------------------------------------------------------
    def __call__(
        self,
        frames: Any,
        *,
        color: str = "rgb",
        overlay: bool = False,
        alpha: float = 0.5,
        logits: bool = False,
        probs: bool = False,
        output: str = "numpy",
    ) -> SegResult | list[SegResult]:
        """Segment one frame or a batch.

        Args:
            frames: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 numpy array / CPU tensor, a list of
                frames (sizes may differ), or a GPU array with ``__cuda_array_interface__`` (read in
                place on a CUDA Segmenter; rejected on a CPU one).
            color: ``"rgb"`` (default) or ``"bgr"`` (OpenCV) channel order of the frames.
            overlay, alpha, logits, probs, output: see :meth:`postprocess`.

        Returns:
            One :class:`SegResult` for a single frame, else a list in input order.

        Raises:
            EdgesegError: a frame of the wrong rank, channel count or dtype (the message says what
                was expected).
        """
        _check_color(color)
        groups, single = as_frame_batch(frames, self.device)
        results: list[SegResult] = []
        for group in groups:
            raw = self.infer(self.preprocess(group, color))
            results += self.postprocess(
                raw,
                group,
                color=color,
                overlay=overlay,
                alpha=alpha,
                logits=logits,
                probs=probs,
                output=output,
            )
        return results[0] if single else results

    def describe(self) -> dict[str, Any]:
        """Backend, precision, device, input size and class count, for reports."""
        return {
            **self.info,
            "num_classes": self.num_classes,
            "input": self.input_name,
            "fixed_batch": self.fixed_batch,
        }


def _image_input(runner: BaseRunner, card: ModelCard) -> TensorMeta:
    """The model's one input, an image batch in the card's layout (else EdgesegError).

    A channel axis of another size than 3 where the card's ``layout`` puts it is refused naming the
    card's value: feeding an NCHW batch to an NHWC network (or the reverse) must not run.
    """
    inputs = runner.get_input_metadata()
    if len(inputs) != 1:
        raise EdgesegError(
            f"{runner.name}: a segmentation model has one input, got {[m.name for m in inputs]}"
        )
    meta = inputs[0]
    axis = 1 if card.layout == "nchw" else 3
    if len(meta.shape) != 4 or (isinstance(meta.shape[axis], int) and meta.shape[axis] != 3):
        expected = "(N, 3, H, W)" if card.layout == "nchw" else "(N, H, W, 3)"
        raise EdgesegError(f"{runner.name}: input '{meta.name}' has shape {list(meta.shape)}, but the model "
                           f"card's layout {card.layout!r} means {expected}")
    return meta


def _spatial(shape: Any, layout: str) -> tuple[Any, Any]:
    """``(H, W)`` of an input shape in ``layout`` (dimensions may be symbolic)."""
    return (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])


def _model_output(out: dict[str, Any], runner_name: str) -> Any:
    """The class scores or labels among a runner's outputs: ``logits``, ``labels`` or the only one."""
    value = out.get("logits", out.get("labels"))
    if value is None:
        if len(out) != 1:
            raise EdgesegError(f"{runner_name}: expected output 'logits' or 'labels', got {sorted(out)}")
        value = next(iter(out.values()))
    return value


def _warn_contract(frames: torch.Tensor, color: str, expected: dict[str, Any]) -> None:
    """Warn when frames break the card's preprocessing contract (BGR frames, 0..1 values)."""
    from edgeseg.data.stats import PixelStats, contract_warnings

    rgb = frames.flip(-1) if color == "bgr" else frames
    seen = PixelStats.from_frames(rgb[:8])
    for line in contract_warnings(seen, PixelStats.from_dict(expected), "the frames"):
        warnings.warn(line, stacklevel=4)


def _check_color(color: str) -> None:
    if color not in COLOR_ORDERS:
        raise EdgesegError(f"color must be one of {list(COLOR_ORDERS)}, got {color!r}")
