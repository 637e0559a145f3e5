"""Every preset: the eval / train output contract, configs, and registry behaviour."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from edgeseg.errors import EdgesegError
from edgeseg.models import build_model, list_models, register_model

PRESETS = [
    "fcn32s_vgg16",
    "fcn16s_vgg16",
    "fcn8s_vgg16",
    "fpnfcn_vgg16",
    "fpnfcn_vgg19",
    "pspnet_r50vd_os16",
    "dbmsnet_r50vd_os16",
    "dbmsnet_r50vd_os8",
    "dbmsnet_r101vd_os16",
    "dbmsnet_r152vd_os16",
    "dbmsnet_r50_os16",
    "dbmsnet_r18_os16",
]


def test_every_preset_is_registered() -> None:
    # Other test modules register tiny presets of their own; the zoo is what edgeseg itself ships.
    from edgeseg.models._registry import _PRESETS

    shipped = sorted(n for n, fn in _PRESETS.items() if fn.__module__.startswith("edgeseg."))
    assert sorted(PRESETS) == shipped
    assert list_models("fcn*") == ["fcn16s_vgg16", "fcn32s_vgg16", "fcn8s_vgg16"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_output_contract(preset: str) -> None:
    """Build once; eval → (N, K, H, W) logits; train → dict with "out" + aux_weights keys; no NaN."""
    torch.manual_seed(0)
    # fc6 at full width is 103 M parameters whose random init dominates the test's time; the
    # contract does not depend on it (test_preset_defaults checks the 4096 default).
    narrow = {"fc_channels": 256} if "vgg" in preset else {}
    model = build_model(preset, num_classes=5, **narrow)
    assert dataclasses.is_dataclass(model.config) and model.config.num_classes == 5
    assert isinstance(model.aux_weights, dict)
    h, w = 32, 48
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 5, h, w)
    assert torch.isfinite(out).all()
    model.train()
    outputs = model(torch.randn(2, 3, h, w))
    assert isinstance(outputs, dict)
    assert set(outputs) == {"out", *model.aux_weights}
    for v in outputs.values():
        assert v.shape == (2, 5, h, w) and torch.isfinite(v).all()


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("fcn32s_vgg16", {"backbone": "vgg16", "upsample_stride": 32, "fc_channels": 4096}),
        ("fcn16s_vgg16", {"upsample_stride": 16}),
        ("fcn8s_vgg16", {"upsample_stride": 8}),
        ("fpnfcn_vgg19", {"backbone": "vgg19", "fc_channels": 4096}),
        ("pspnet_r50vd_os16", {"backbone": "resnet50vd", "branches": ("ppm",), "pp_out": 128}),
        (
            "dbmsnet_r50vd_os16",
            {
                "backbone": "resnet50vd",
                "output_stride": 16,
                "branches": ("fr", "ppm"),
                "fr_inputs": ("De3", "De1"),
                "fr_resolution": "De1",
                "fr_channels": 320,
                "ddc_reduce_kernel": 1,
                "dilations_s": (1, 3, 5, 7),
                "dilations_m": (5, 7, 11, 13),
                "dilations_l": (13, 15, 17, 19),
                "mdm_pool_channels": 80,
                "mdm_attention": False,
                "ppm_bins": (1, 2, 3, 6),
                "pp_out": 128,
                "branch_weights": (0.4, 1.0),
                "aux_loss": False,
                "width": 1.0,
            },
        ),
        ("dbmsnet_r50vd_os8", {"backbone": "resnet50vd", "output_stride": 8}),
        ("dbmsnet_r101vd_os16", {"backbone": "resnet101vd"}),
        ("dbmsnet_r152vd_os16", {"backbone": "resnet152vd"}),
        ("dbmsnet_r50_os16", {"backbone": "resnet50"}),
        ("dbmsnet_r18_os16", {"backbone": "resnet18", "output_stride": 16}),
    ],
)
def test_preset_defaults(preset: str, expected: dict) -> None:
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        config = build_model(preset, backbone=None).config  # None overrides are dropped
    assert config.num_classes == 19
    for key, value in expected.items():
        assert getattr(config, key) == value, key


def test_dbmsnet_r50vd_channels_follow_the_paper() -> None:
    with torch.device("meta"):
        model = build_model("dbmsnet_r50vd_os16")
    assert model.fr.proj[0].in_channels == 256 + 1024  # concat(De1, up(De3))
    assert model.psp.ppm.stages[0][0].out_channels == 512  # 2048 → 512 per bin
    assert model.psp.bottleneck[0].in_channels == 4096
    assert model.psp.bottleneck[0].kernel_size == (3, 3)


def test_overrides_accept_yaml_lists_and_check_types() -> None:
    model = build_model("dbmsnet_r18_os16", width=0.25, ppm_bins=[1, 2], branch_weights=[1, 1])
    assert model.config.ppm_bins == (1, 2) and model.config.branch_weights == (1.0, 1.0)
    with pytest.raises(EdgesegError, match="output_stride: expected an integer"):
        build_model("dbmsnet_r18_os16", output_stride="16")
    with pytest.raises(EdgesegError, match="branch_weights: expected 2 values"):
        build_model("dbmsnet_r18_os16", branch_weights=[1.0])
    with pytest.raises(EdgesegError, match="mdm_attention: expected bool"):
        build_model("dbmsnet_r18_os16", mdm_attention=1)


def test_unknown_override_lists_valid_keys() -> None:
    with pytest.raises(EdgesegError) as e:
        build_model("fcn8s_vgg16", output_stride=16)
    msg = str(e.value)
    assert "output_stride" in msg and "fcn8s_vgg16" in msg
    assert "valid keys: num_classes, backbone, upsample_stride, fc_channels, dropout" in msg


def test_unknown_preset() -> None:
    with pytest.raises(EdgesegError, match="unknown model preset 'dbmsnet'.*dbmsnet_r18_os16"):
        build_model("dbmsnet")


def test_duplicate_registration_raises() -> None:
    def dbmsnet_r18_os16() -> None:  # same name as a registered preset
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="registered twice"):
        register_model(dbmsnet_r18_os16)  # type: ignore[arg-type]


def test_training_step_reaches_every_parameter() -> None:
    """Loss = CE(out) + Σ w·CE(aux) back-propagates into every parameter (no dead branches)."""
    torch.manual_seed(0)
    model = build_model("dbmsnet_r18_os16", num_classes=3, width=0.25, aux_loss=True).train()
    x = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    target[:, :4] = 255
    outputs = model(x)
    loss = F.cross_entropy(outputs["out"], target, ignore_index=255)
    for key, weight in model.aux_weights.items():
        loss = loss + weight * F.cross_entropy(outputs[key], target, ignore_index=255)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
