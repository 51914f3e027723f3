"""VOLO model zoo: registry, checkpoint loading, outlook-attention forms."""

from __future__ import annotations

from pathlib import Path

from volo_deploy.errors import CheckpointError
from volo_deploy.models.checkpoint import CheckpointInfo, adapt_state_dict, detect_config, read_state_dict
from volo_deploy.models.configs import DEMO_MODEL, VoloConfig, get_config, list_models
from volo_deploy.models.outlook import OUTLOOK_FORMS, OutlookAttention, OutlookParams, set_outlook_form
from volo_deploy.models.volo import VOLO

# ``fused`` / ``onnx_node`` forms register themselves with the custom op (onnx is imported lazily there).
from volo_deploy.models import outlook_onnx  # noqa: E402,F401  (after outlook: it imports it)

__all__ = [
    "DEMO_MODEL",
    "OUTLOOK_FORMS",
    "VOLO",
    "CheckpointInfo",
    "OutlookAttention",
    "OutlookParams",
    "VoloConfig",
    "create_model",
    "demo_checkpoint",
    "get_config",
    "list_models",
    "load_model",
    "set_outlook_form",
]


def demo_checkpoint() -> Path:
    """Path of the bundled demo checkpoint (VOLO trained on scikit-learn's digits)."""
    return Path(__file__).resolve().parent.parent / "assets" / "volo_demo_64.safetensors"


def create_model(
    name: str = "volo_d1_224", img_size: int | None = None, num_classes: int | None = None, form: str = "reference"
) -> VOLO:
    """A VOLO with freshly initialised (untrained) weights."""
    return set_outlook_form(VOLO(get_config(name, img_size, num_classes)), form)


def load_model(
    checkpoint: str | Path | None = None,
    name: str | None = None,
    img_size: int | None = None,
    form: str = "reference",
    use_ema: bool = False,
) -> tuple[VOLO, CheckpointInfo]:
    """Build a VOLO from ``checkpoint``; the variant is detected from its shapes.

    ``name`` (e.g. ``volo_d1_224``) is checked against what the file holds; ``img_size``
    (or the size in ``name``) may differ from the training size: pos_embed is resized.
    With neither ``checkpoint`` nor ``name``, loads the bundled demo model.
    """
    if name is not None:
        get_config(name, img_size)  # an unknown name or size is the first thing to report
    if checkpoint is None:
        if name not in (None, DEMO_MODEL, "volo_demo"):
            raise CheckpointError(f"--model {name}: no checkpoint given (only the demo model ships weights)")
        checkpoint = demo_checkpoint()
    source = f"checkpoint {checkpoint}"
    sd, wrapper = read_state_dict(checkpoint, use_ema=use_ema)
    found = detect_config(sd, source)
    if name is not None:
        want = get_config(name, img_size, num_classes=found.num_classes)
        if want.family != found.family and found.family != "volo_custom":
            raise CheckpointError(
                f"{source}: holds {found.family} weights, but --model {name} expects {want.family}"
            )
    else:
        want = found if img_size is None else found.with_(img_size=int(img_size))
        if found.family in ("volo_d1", "volo_d2", "volo_d3", "volo_d4", "volo_d5", "volo_demo"):
            want = get_config(found.family, want.img_size, found.num_classes)
    want = want.with_(num_post_layers=found.num_post_layers)
    sd, notes = adapt_state_dict(sd, found, want, source)
    model = VOLO(want)
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: does not fit {want.name}; missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    info = CheckpointInfo(str(checkpoint), wrapper, found.family, found.img_size, found.num_classes, notes)
    return set_outlook_form(model, form), info
