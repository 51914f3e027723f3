"""VOLO numbers equal timm's (golden logits) and every outlook form equals the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volo_deploy.errors import ModelNameError
from volo_deploy.models import OUTLOOK_FORMS, create_model, get_config, list_models, load_model, set_outlook_form
from volo_deploy.models.init import deterministic_state_dict, fill_deterministic, golden_input
from volo_deploy.models.outlook import OutlookParams, outlook_core_reference

from pathlib import Path

DATA = Path(__file__).parent / "data"

GOLDEN = np.load(DATA / "golden_logits.npz")


@pytest.mark.parametrize("name", ["volo_d1_224", "volo_d2_224", "volo_d3_224", "volo_d4_224", "volo_d5_224"])
def test_logits_equal_timm_golden(name: str) -> None:
    model = fill_deterministic(create_model(name))
    with torch.no_grad():
        out = model(golden_input(2, 224)).numpy()
    np.testing.assert_allclose(out, GOLDEN[name], rtol=0, atol=1e-5)


def test_d1_checkpoint_at_384_resizes_pos_embed_like_official_loader(deterministic_checkpoint) -> None:
    sd = deterministic_state_dict(create_model("volo_d1_224"))
    path = deterministic_checkpoint("volo_d1_224")
    model, info = load_model(path, "volo_d1_384")
    assert model.pos_embed.shape == (1, 24, 24, 384)
    assert any("pos_embed resized 14x14 -> 24x24" in n for n in info.notes)
    with torch.no_grad():
        out = model(golden_input(2, 384)).numpy()
    np.testing.assert_allclose(out, GOLDEN["volo_d1_224@384"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("form", sorted(set(OUTLOOK_FORMS) - {"onnx_node"}))
@pytest.mark.parametrize("hw", [(28, 28), (27, 27), (24, 20), (9, 13)])
def test_outlook_forms_match_reference(form: str, hw: tuple[int, int]) -> None:
    h, w = hw
    p = OutlookParams(3, 1, 2, 4, 16**-0.5)
    gen = torch.Generator().manual_seed(h * 100 + w)
    v = torch.randn(2, h, w, 64, generator=gen, dtype=torch.float64)
    attn = torch.randn(2, math.ceil(h / 2), math.ceil(w / 2), 4 * 81, generator=gen, dtype=torch.float64)
    ref = outlook_core_reference(v, attn, p)
    out = OUTLOOK_FORMS[form](v, attn, p)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_outlook_slice_form_general_kernel_and_stride() -> None:
    for k, pad, s, hw in [(5, 2, 2, 12), (3, 1, 1, 7), (2, 0, 2, 8), (4, 1, 3, 13)]:
        p = OutlookParams(k, pad, s, 2, 0.3)
        n = (hw + 2 * pad - k) // s + 1
        v = torch.randn(1, hw, hw, 8, dtype=torch.float64)
        attn = torch.randn(1, n, n, 2 * k**4, dtype=torch.float64)
        torch.testing.assert_close(OUTLOOK_FORMS["slice"](v, attn, p), outlook_core_reference(v, attn, p))


def test_form_switch_changes_every_block_not_the_numbers() -> None:
    model = fill_deterministic(create_model("volo_demo_64"))
    x = golden_input(2, 64)
    with torch.no_grad():
        ref = model(x)
        for form in ("slice", "conv"):
            set_outlook_form(model, form)
            assert all(m.form == form for m in model.modules() if hasattr(m, "form"))
            torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown outlook-attention form"):
        set_outlook_form(model, "nope")


def test_registry_lists_every_published_variant() -> None:
    names = set(list_models())
    for n in ["volo_d1_224", "volo_d1_384", "volo_d2_224", "volo_d2_384", "volo_d3_224", "volo_d3_448",
              "volo_d4_224", "volo_d4_448", "volo_d5_224", "volo_d5_448", "volo_d5_512"]:
        assert n in names
    assert get_config("volo_d4_448").crop_pct == 1.15
    assert get_config("volo_d1_384").grid_size == 24
    assert get_config("volo_d2_320").img_size == 320  # custom size
    with pytest.raises(ModelNameError, match="unknown model"):
        get_config("resnet50")
    with pytest.raises(ModelNameError, match="multiple of 16"):
        get_config("volo_d1_225")


def test_param_counts_match_published() -> None:
    # Published parameter counts (timm model cards: volo_d1_224 26.6M, volo_d2_224 58.7M).
    # Counted on meta tensors: no memory.
    for name, millions in [("volo_d1_224", 26.6), ("volo_d2_224", 58.7)]:
        with torch.device("meta"):
            m = create_model(name)
        assert round(sum(p.numel() for p in m.parameters()) / 1e6, 1) == millions


def test_export_friendly_layers_compute_the_same_numbers() -> None:
    from volo_deploy.models.layers import set_export_friendly

    model = fill_deterministic(create_model("volo_demo_64"))
    x = golden_input(3, 64)
    with torch.no_grad():
        ref = model(x)
        set_export_friendly(model, True)
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    assert set(model.state_dict()) == set(create_model("volo_demo_64").state_dict())
