"""One adapter between any PyTorch segmentation network and edgeseg's graph contract.

Everything after the model (export, the INT8 guard, validation, the runtime) reads one input,
``images`` ``(N, 3, H, W)`` normalised RGB, and one output, ``(N, K, H, W)`` logits at the input
size. Real networks differ: they take NHWC or BGR, return a dict (torchvision's
``{"out", "aux"}``), a tuple with aux heads, a Hugging Face ``SemanticSegmenterOutput`` (its
``logits`` attribute), probabilities instead of logits, one channel for a binary task, or a map at
a fraction of the input resolution (SegFormer: 1/4). :class:`SegmentationAdapter` folds all of that
into the exported graph, so nothing downstream needs to know.

Binary outputs become two-class logits ``(-x/2, x/2)`` from the logit ``x``: their softmax is
exactly ``(1 - sigmoid(x), sigmoid(x))``, so the class map (class 1 where ``x > 0``, i.e. where the
probability is above 0.5) and the probabilities downstream are the network's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import EdgesegError

__all__ = ["ACTIVATIONS", "OutputSpec", "SegmentationAdapter", "output_activation", "output_layout",
           "select_output"]

#: What a network's chosen output holds: logits (``none``) or probabilities from a sigmoid/softmax.
ACTIVATIONS = ("none", "sigmoid", "softmax")
# Probabilities are clamped this far from 0 and 1 before the log, so a saturated pixel gives a
# large finite logit instead of an infinity (which FP16 and INT8 graphs cannot carry).
_EPS = 1e-6
# Ops that move, resize or relabel a tensor without computing new scores: looking back through
# them from the output finds the op that decides logits vs probabilities.
_PASS_THROUGH_FX = {"permute", "transpose", "view", "reshape", "_unsafe_view", "clone", "contiguous", "alias",
                    "squeeze", "unsqueeze", "_to_copy", "to", "upsample_bilinear2d", "upsample_nearest2d",
                    "upsample_bicubic2d", "interpolate", "getitem", "detach", "expand"}


@dataclass(frozen=True)
class OutputSpec:
    """How to read a network's output as ``(N, K, H, W)`` logits.

    Args:
        key: which output: a dict key, a tuple index, or None (a tensor; a ``logits`` attribute;
            the dict entry ``out``/``logits``; a tuple's first item). Defaults to None.
        layout: ``"nchw"`` or ``"nhwc"``. Defaults to nchw.
        activation: ``"none"`` (logits), ``"sigmoid"`` or ``"softmax"`` (probabilities).
            Defaults to none.
        binary: one channel, read as the score of class 1 of two. Defaults to False.
    """

    key: str | int | None = None
    layout: str = "nchw"
    activation: str = "none"
    binary: bool = False

    def describe(self) -> str:
        kind = {"none": "logits", "sigmoid": "sigmoid probabilities", "softmax": "softmax probabilities"}
        what = f"{kind[self.activation]}, {self.layout.upper()}"
        what += ", binary (1 channel)" if self.binary else ""
        return what if self.key is None else f"output {self.key!r}: {what}"


def select_output(out: Any, key: str | int | None, what: str = "model output") -> torch.Tensor:
    """The one tensor of ``out`` that holds the segmentation scores.

    Args:
        out: what the network returned: a tensor, a mapping, a sequence, or an object with
            ``logits`` (Hugging Face ``ModelOutput``).
        key: see :attr:`OutputSpec.key`.
        what: how errors name the output (``--output-name`` is suggested in them).

    Raises:
        EdgesegError: no such key/index, an ambiguous mapping, or not a tensor.
    """
    if isinstance(out, torch.Tensor):
        if key is not None:
            raise EdgesegError(f"--output-name {key}: the {what} is a single tensor, not a dict or tuple")
        return out
    if key is None and isinstance(getattr(out, "logits", None), torch.Tensor):
        return out.logits
    if isinstance(out, Mapping):
        names = [str(k) for k in out]
        if key is None:
            found = [k for k in ("out", "logits") if k in out]
            if not found and len(out) != 1:
                raise EdgesegError(f"the {what} is a dict with keys {names}: choose one with --output-name")
            key = found[0] if found else next(iter(out))
        if key not in out:
            raise EdgesegError(f"--output-name {key}: the {what} has keys {names}")
        chosen = out[key]
    elif isinstance(out, Sequence) and not isinstance(out, str):
        try:
            index = 0 if key is None else int(key)
            chosen = out[index]
        except (ValueError, IndexError):
            raise EdgesegError(f"--output-name {key}: the {what} is a tuple of {len(out)}; "
                               f"give an index 0..{len(out) - 1}") from None
    else:
        raise EdgesegError(f"the {what} is a {type(out).__name__}: expected a tensor, dict or tuple")
    if not isinstance(chosen, torch.Tensor):
        raise EdgesegError(f"the {what} entry {key!r} is a {type(chosen).__name__}, not a tensor")
    return chosen


def output_layout(shape: Sequence[int | None], input_size: tuple[int, int], num_classes: int | None,
                  input_layout: str, what: str) -> tuple[str, int]:
    """Read a 4-D output shape as NCHW or NHWC; returns ``(layout, channels)``.

    A reading is kept when its spatial size is the input's or an even fraction of it (the same
    factor on both axes, at most the input size) and, with ``num_classes`` known, its channel
    count is the class count (or 1 for two classes). When both readings remain, the output
    follows the input's layout.

    Raises:
        EdgesegError: not 4-D, or neither reading fits (the message names the shape).
    """
    if len(shape) != 4:
        raise EdgesegError(f"{what}: expected a 4-D segmentation output (N, C, H, W or N, H, W, C), "
                           f"got shape {tuple(shape)}")
    H, W = input_size
    readings = {"nchw": (shape[1], shape[2], shape[3]), "nhwc": (shape[3], shape[1], shape[2])}

    def fits(c: int | None, h: int | None, w: int | None) -> bool:
        if c is None or h is None or w is None or not (1 <= h <= H and 1 <= w <= W):
            return False
        if num_classes is not None and c != num_classes and not (c == 1 and num_classes == 2):
            return False
        return round(H / h) == round(W / w)

    kept = [layout for layout, dims in readings.items() if fits(*dims)]
    if not kept:
        classes = f" with {num_classes} classes" if num_classes is not None else ""
        raise EdgesegError(f"{what}: shape {tuple(shape)} is neither N×C×H×W nor N×H×W×C for an input of "
                           f"{H}x{W}{classes} (check --input and --num-classes)")
    layout = kept[0] if len(kept) == 1 else input_layout
    return layout, int(readings[layout][0])  # type: ignore[arg-type]


def output_activation(graph: Any, index: int) -> str:
    """``"sigmoid"``, ``"softmax"`` or ``"none"``: the last op before flat output ``index`` of an FX graph.

    Args:
        graph: the ``torch.fx.Graph`` of a ``torch.export`` program.
        index: position of the chosen tensor among the program's flattened outputs.
    """
    output = next(n for n in graph.nodes if n.op == "output")
    node = output.args[0][index]
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if name == "sigmoid":
            return "sigmoid"
        if name in ("softmax", "_softmax"):
            return "softmax"
        if name not in _PASS_THROUGH_FX or not node.args:
            return "none"
        node = node.args[0]
    return "none"


class SegmentationAdapter(nn.Module):
    """Wraps a network so that it maps normalised NCHW RGB images to NCHW logits at input size.

    Args:
        model: the network (eval mode is the caller's business).
        input_size: ``(H, W)`` of the input, and of the logits.
        layout: the network's input layout, ``"nchw"`` or ``"nhwc"``. Defaults to nchw.
        channels: the network's channel order, ``"rgb"`` or ``"bgr"``. Defaults to rgb.
        output: how to read its output. Defaults to ``OutputSpec()`` (an NCHW logits tensor).
        fixed_mode: the model's train/eval mode was fixed when it was made (a ``torch.export``
            program's module, which refuses ``train()``/``eval()``); the adapter's own mode
            switches then leave it alone. Defaults to False.
        static_batch: the only batch size the model accepts (a program exported with a static
            batch); larger batches (the guard's, validation's) are run in chunks of it. Defaults to
            any batch.
    """

    def __init__(self, model: nn.Module, *, input_size: tuple[int, int], layout: str = "nchw",
                 channels: str = "rgb", output: OutputSpec | None = None, fixed_mode: bool = False,
                 static_batch: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.layout, self.channels = layout, channels
        self.output = output or OutputSpec()
        self.fixed_mode = fixed_mode
        self.static_batch = static_batch

    def train(self, mode: bool = True) -> SegmentationAdapter:
        if not self.fixed_mode:
            return super().train(mode)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.static_batch
        if b is None or x.shape[0] == b:
            return self._forward(x)
        # Never traced (the export's example batch is the model's own): the guard and validation
        # run larger batches, in chunks the model accepts, the last one padded.
        parts = []
        for start in range(0, x.shape[0], b):
            part = x[start:start + b]
            n = part.shape[0]
            if n < b:
                part = torch.cat([part, part.new_zeros((b - n, *part.shape[1:]))])
            parts.append(self._forward(part)[:n])
        return torch.cat(parts)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == "bgr":
            x = x.flip(1)
        if self.layout == "nhwc":
            x = x.permute(0, 2, 3, 1)
        y = select_output(self.model(x), self.output.key)
        if self.output.layout == "nhwc":
            y = y.permute(0, 3, 1, 2)
        y = y.float()
        if self.output.activation == "sigmoid":
            y = y.clamp(_EPS, 1 - _EPS)
            y = torch.log(y) - torch.log1p(-y)  # the logit: > 0 exactly where p > 0.5
        elif self.output.activation == "softmax":
            y = torch.log(y.clamp_min(_EPS))  # log-probabilities: same argmax, same softmax
        if tuple(y.shape[-2:]) != self.input_size:
            # Logits are upsampled before the argmax, as the zoo's models do themselves.
            y = F.interpolate(y, size=self.input_size, mode="bilinear", align_corners=False)
        if self.output.binary:
            y = torch.cat([-0.5 * y, 0.5 * y], dim=1)
        return y
