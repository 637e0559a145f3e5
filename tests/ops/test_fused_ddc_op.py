"""torch.ops.edgeseg.fused_ddc against the PyTorch reference (extension-cpp's test layout)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

import edgeseg.ops.fused_ddc_op as fused_ddc_module
from edgeseg.ops import extension_available, extension_error, fused_ddc, fused_ddc_reference, has_kernel

# The paper's dilation sets (docs/design.md 3.4): S, M, L of the text, the table's three, the L ablation.
DILATION_SETS = [
    (1, 3, 5, 7),
    (5, 7, 11, 13),
    (13, 15, 17, 19),
    (1, 2, 3, 5),
    (5, 7, 9, 11),
    (11, 13, 15, 17),
    (13, 16, 18, 20),
]

# (N, C, H, W): odd sizes; planes smaller than the largest dilation (all-border rows / columns);
# a wide plane with a long branch-free interior; N from 1 to 3. The last three take the CUDA
# kernel's 16-byte path (W a multiple of 8): W = 72 in FP32 only (FP16 needs W >= 128), 136 and 264
# with a partly filled last tile (FP32 tiles are 128 columns wide, FP16 tiles 256).
SHAPES = [
    (1, 3, 7, 9),
    (2, 4, 5, 23),
    (3, 2, 19, 4),
    (1, 5, 33, 65),
    (2, 1, 1, 1),
    (1, 2, 17, 72),
    (2, 3, 21, 136),
    (1, 2, 40, 264),
]


def sample_inputs(
    device: str,
    shape: tuple[int, int, int, int],
    dilations: tuple[int, ...],
    *,
    residual: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple:
    """Random arguments of fused_ddc; scale around 1 and a signed shift so ReLU clips some outputs."""
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape

    def rand(*size: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return (torch.rand(*size, generator=g) * (hi - lo) + lo).to(device=device, dtype=dtype)

    return (
        rand(n, c, h, w),
        rand(4, c, 3, 3),
        list(dilations),
        rand(4, c, lo=0.5, hi=1.5),
        rand(4, c, lo=-0.3, hi=0.3),
        rand(n, c),
        rand(n, 5 * c, h, w) if residual else None,
    )


def _check_against_reference(device: str, dtype: torch.dtype, atol: float) -> None:
    for i, dilations in enumerate(DILATION_SETS):
        for j, shape in enumerate(SHAPES):
            for residual in (True, False):
                args = sample_inputs(
                    device, shape, dilations, residual=residual, dtype=dtype, seed=i * 100 + j
                )
                out = torch.ops.edgeseg.fused_ddc.default(*args)
                # Reference in FP32 on the CPU: for FP16 the bound then covers the kernel's rounding.
                ref_args = [a.float().cpu() if isinstance(a, torch.Tensor) else a for a in args]
                ref = fused_ddc_reference(*ref_args)
                assert out.shape == (shape[0], 5 * shape[1], shape[2], shape[3])
                assert out.dtype == dtype and out.device.type == device
                err = (out.float().cpu() - ref).abs().max().item()
                assert err <= atol, (
                    f"dilations={dilations} shape={shape} residual={residual}: max abs err {err}"
                )


def _require_cuda_kernel() -> None:
    # Without it the cuda tests would fail on dispatch with a message that does not say why.
    assert has_kernel("cuda"), "edgeseg._C was built without its CUDA kernel (CPU-only torch at build time?)"


def test_extension_is_built() -> None:
    # `make test` installs with the C++ op; everything below would otherwise test the fallback.
    assert extension_available(), f"edgeseg._C failed to load: {extension_error()}"
    assert has_kernel("cpu")


def test_fused_ddc_cpu() -> None:
    _check_against_reference("cpu", torch.float32, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_ddc_cuda_fp32() -> None:
    _require_cuda_kernel()
    _check_against_reference("cuda", torch.float32, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_ddc_cuda_fp16() -> None:
    _require_cuda_kernel()
    # Inputs are rounded to FP16 before the reference sees them, so the error is the kernel's own:
    # FP32 accumulation, then one rounding of outputs below 16 (half an FP16 ulp there is 2**-8).
    _check_against_reference("cuda", torch.float16, atol=1e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_unaligned_residual_takes_the_one_pixel_path(dtype: torch.dtype) -> None:
    # A residual that starts one element into its storage is contiguous but not 16-byte aligned:
    # the launcher must fall back to one-pixel accesses, which compute the same sums bit for bit.
    _require_cuda_kernel()
    args = list(sample_inputs("cuda", (2, 3, 21, 136), (1, 3, 5, 7), dtype=dtype, seed=7))
    residual = args[6]
    storage = torch.empty(residual.numel() + 1, dtype=dtype, device="cuda")
    shifted = storage[1:].view_as(residual).copy_(residual)
    assert shifted.is_contiguous() and shifted.data_ptr() % 16 != 0
    aligned = torch.ops.edgeseg.fused_ddc.default(*args)
    args[6] = shifted
    assert torch.equal(torch.ops.edgeseg.fused_ddc.default(*args), aligned)


def test_dilation_larger_than_plane_reads_only_padding() -> None:
    # With H = W = 1 every off-centre tap is padding: each conv branch reduces to the centre tap.
    x, weight, dil, scale, shift, pooled, residual = sample_inputs("cpu", (2, 3, 1, 1), (13, 16, 18, 20))
    out = fused_ddc(x, weight, dil, scale, shift, pooled, residual)
    centre = torch.relu(
        weight[:, :, 1, 1].unsqueeze(0) * x[:, :, 0, 0].unsqueeze(1) * scale + shift
    )  # (N, 4, C)
    expected = torch.cat([centre, pooled.unsqueeze(1)], 1).transpose(1, 2).reshape(2, 15, 1, 1) + residual
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_output_channel_order_is_shuffled() -> None:
    # Zero weights and shift = branch index make every conv branch a constant: channel c*5+b == b.
    c = 3
    x = torch.randn(1, c, 4, 6)
    weight = torch.zeros(4, c, 3, 3)
    scale = torch.ones(4, c)
    shift = torch.arange(4.0).view(4, 1).expand(4, c).contiguous()
    pooled = torch.full((1, c), 4.0)
    out = fused_ddc(x, weight, (1, 3, 5, 7), scale, shift, pooled)
    branch_of_channel = out[0, :, 0, 0]
    assert branch_of_channel.tolist() == [float(ch % 5) for ch in range(5 * c)]


def test_non_contiguous_inputs() -> None:
    x, weight, dil, scale, shift, pooled, residual = sample_inputs("cpu", (2, 3, 9, 11), (1, 3, 5, 7))
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, channels-last-like strides
    residual_nc = residual.to(memory_format=torch.channels_last)
    out = fused_ddc(x_nc, weight, dil, scale, shift, pooled, residual_nc)
    torch.testing.assert_close(out, fused_ddc_reference(x, weight, dil, scale, shift, pooled, residual))


@pytest.mark.parametrize(
    ("index", "bad", "message"),
    [
        (0, torch.zeros(2, 3, 9), "x must be (N, C, H, W)"),
        (1, torch.zeros(4, 2, 3, 3), "weight must be (4, C, 3, 3)"),
        (2, [1, 3, 5], "expected 4 dilations"),
        (2, [0, 3, 5, 7], "dilations must be in [1, 1024]"),
        (3, torch.zeros(3, 3), "scale must be (4, C)"),
        (5, torch.zeros(1, 3), "pooled must be (N, C)"),
        (6, torch.zeros(2, 14, 9, 11), "residual must be (N, 5C, H, W)"),
        (1, torch.zeros(4, 3, 3, 3, dtype=torch.float64), "share x's dtype"),
    ],
)
def test_bad_arguments_raise(index: int, bad: object, message: str) -> None:
    args = list(sample_inputs("cpu", (2, 3, 9, 11), (1, 3, 5, 7)))
    args[index] = bad
    with pytest.raises(RuntimeError, match=re.escape(message)):
        torch.ops.edgeseg.fused_ddc.default(*args)


def test_cpu_kernel_is_fp32_only() -> None:
    args = sample_inputs("cpu", (1, 2, 5, 5), (1, 3, 5, 7), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="FP32 only"):
        torch.ops.edgeseg.fused_ddc.default(*args)


def _opcheck(device: str, residual: bool) -> None:
    # Schema, fake (meta) implementation, autograd registration, AOT dispatch (static and dynamic).
    args = sample_inputs(device, (2, 3, 7, 10), (5, 7, 11, 13), residual=residual)
    torch.library.opcheck(torch.ops.edgeseg.fused_ddc.default, args)


def _check_backward_refused(device: str) -> None:
    x, weight, dil, scale, shift, pooled, residual = sample_inputs(device, (1, 2, 5, 6), (1, 3, 5, 7))
    x.requires_grad_(True)
    y = torch.ops.edgeseg.fused_ddc.default(x, weight, dil, scale, shift, pooled, residual)
    with pytest.raises(RuntimeError, match="inference-only"):
        y.sum().backward()


@pytest.mark.parametrize("residual", [True, False])
def test_opcheck(residual: bool) -> None:
    _opcheck("cpu", residual)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("residual", [True, False])
def test_opcheck_cuda(residual: bool) -> None:
    _require_cuda_kernel()
    _opcheck("cuda", residual)


def test_backward_is_refused() -> None:
    _check_backward_refused("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_backward_is_refused_cuda() -> None:
    _require_cuda_kernel()
    _check_backward_refused("cuda")


def test_fallback_to_reference_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # What users get when edgeseg._C was not built: the reference, and one warning saying so.
    monkeypatch.setattr(fused_ddc_module, "_LOAD_ERROR", "simulated: not built")
    monkeypatch.setattr(fused_ddc_module, "_warned", set())
    args = sample_inputs("cpu", (1, 2, 6, 7), (1, 2, 3, 5))
    with pytest.warns(RuntimeWarning, match="not available.*simulated"):
        out = fused_ddc(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused_ddc(*args)  # second call: silent
    torch.testing.assert_close(out, fused_ddc_reference(*args))
