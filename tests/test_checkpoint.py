"""Checkpoint formats, wrappers, variant detection and clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from volo_deploy.errors import CheckpointError
from volo_deploy.models import create_model, load_model
from volo_deploy.models.checkpoint import detect_config, read_state_dict
from volo_deploy.models.init import deterministic_state_dict, golden_input


@pytest.fixture(scope="module")
def demo_sd() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(create_model("volo_demo_64"), seed=3)


def _reference_logits(sd: dict[str, torch.Tensor]) -> torch.Tensor:
    m = create_model("volo_demo_64")
    m.load_state_dict(sd)
    with torch.no_grad():
        return m(golden_input(2, 64))


@pytest.mark.parametrize(
    "suffix,wrap",
    [
        (".pth", None),
        (".pth.tar", "state_dict"),
        (".pth.tar", "state_dict_ema"),
        (".pth", "model"),
        (".safetensors", None),
    ],
)
@pytest.mark.parametrize("prefix", ["", "module."])
def test_formats_wrappers_and_prefixes_load_the_same_numbers(tmp_path, demo_sd, suffix, wrap, prefix) -> None:
    sd = {prefix + k: v for k, v in demo_sd.items()}
    path = tmp_path / f"ckpt{suffix}"
    if suffix == ".safetensors":
        if wrap:
            pytest.skip("safetensors has no wrappers")
        save_file(sd, str(path))
    else:
        torch.save({wrap: sd, "epoch": 3} if wrap else sd, path)
    model, info = load_model(path)
    assert info.family == "volo_demo" and info.num_classes == 10 and info.img_size == 64
    assert info.wrapper == wrap
    with torch.no_grad():
        torch.testing.assert_close(model(golden_input(2, 64)), _reference_logits(demo_sd))


def test_ema_weights_are_chosen_on_request(tmp_path, demo_sd) -> None:
    other = {k: v + 1 if v.is_floating_point() else v for k, v in demo_sd.items()}
    path = tmp_path / "train.pth.tar"
    torch.save({"state_dict": demo_sd, "state_dict_ema": other}, path)
    sd, wrapper = read_state_dict(path)
    assert wrapper == "state_dict"
    sd_ema, wrapper_ema = read_state_dict(path, use_ema=True)
    assert wrapper_ema == "state_dict_ema"
    torch.testing.assert_close(sd_ema["head.weight"], other["head.weight"])


@pytest.mark.parametrize("family", ["volo_d1", "volo_d2", "volo_d3", "volo_d4", "volo_d5"])
def test_variant_detected_from_shapes(family: str) -> None:
    with torch.device("meta"):
        sd = create_model(f"{family}_224", num_classes=37).state_dict()
    cfg = detect_config(sd)
    assert (cfg.family, cfg.img_size, cfg.num_classes) == (family, 224, 37)


def test_any_number_of_classes_comes_from_the_checkpoint(tmp_path) -> None:
    sd = deterministic_state_dict(create_model("volo_demo_64", num_classes=3))
    path = tmp_path / "three.safetensors"
    save_file(sd, str(path))
    model, info = load_model(path, "volo_demo_64")
    assert info.num_classes == 3 and model.head.out_features == 3


def test_variant_mismatch_names_expected_and_found(tmp_path) -> None:
    with torch.device("meta"):
        sd = create_model("volo_d2_224").state_dict()
    path = tmp_path / "d2.pth"
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in sd.items()}, path)
    with pytest.raises(CheckpointError, match=r"holds volo_d2 weights, but --model volo_d1_224 expects volo_d1"):
        load_model(path, "volo_d1_224")


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="file not found"):
        load_model(tmp_path / "nope.pth")


def test_corrupt_file(tmp_path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(CheckpointError, match=r"broken.pth: cannot be read"):
        load_model(path)


def test_wrong_suffix(tmp_path) -> None:
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"expected one of .pth"):
        load_model(path)


def test_non_volo_state_dict(tmp_path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(CheckpointError, match=r"not a VOLO state dict; expected keys .* missing patch_embed"):
        load_model(path)


def test_unknown_model_name_is_reported_before_anything_else() -> None:
    from volo_deploy.errors import ModelNameError

    with pytest.raises(ModelNameError, match="unknown model 'volo_d9_224'; known: volo_d1_224"):
        load_model(None, "volo_d9_224")
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        load_model(None, "volo_d1_224")
