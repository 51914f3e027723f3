"""Write golden logits of timm's VOLO under deterministic weights (run by hand).

Needs timm, which is not a dependency of volo_deploy. In a separate venv:

    python -m venv /tmp/timm_venv
    /tmp/timm_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm safetensors numpy
    /tmp/timm_venv/bin/python scripts/make_golden.py

Each model is filled with ``volo_deploy.models.init.deterministic_state_dict`` (a
function of state-dict key, shape and seed) and run on ``golden_input``; the tests
fill our VOLO the same way and compare logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from volo_deploy.models.init import deterministic_state_dict, golden_input  # noqa: E402

VARIANTS = {
    "volo_d1_224": 224,
    "volo_d2_224": 224,
    "volo_d3_224": 224,
    "volo_d4_224": 224,
    "volo_d5_224": 224,
    # d1 trained at 224 evaluated at 384: exercises the pos_embed resize path
    "volo_d1_224@384": 384,
}
BATCH = 2


def main() -> None:
    torch.manual_seed(0)
    out: dict[str, np.ndarray] = {}
    for key, size in VARIANTS.items():
        name = key.split("@")[0]
        model = timm.create_model(name, pretrained=False).eval()
        model.load_state_dict(deterministic_state_dict(model, seed=0))
        if size != model.pos_embed.shape[1] * 16:  # the official loader's bicubic resize
            model = timm.create_model(name, pretrained=False, img_size=size).eval()
            sd = deterministic_state_dict(timm.create_model(name, pretrained=False), seed=0)
            pe = sd["pos_embed"].permute(0, 3, 1, 2)
            pe = torch.nn.functional.interpolate(pe, size=(size // 16, size // 16), mode="bicubic", align_corners=False)
            sd["pos_embed"] = pe.permute(0, 2, 3, 1)
            model.load_state_dict(sd)
        with torch.no_grad():
            logits = model(golden_input(BATCH, size)).numpy()
        out[key] = logits.astype(np.float32)
        print(f"{key}: logits {logits.shape}, |max| {np.abs(logits).max():.3f}", flush=True)
    path = ROOT / "tests" / "data" / "golden_logits.npz"
    np.savez_compressed(path, **out)
    meta = {"timm": timm.__version__, "torch": torch.__version__, "batch": BATCH, "variants": VARIANTS}
    (path.with_suffix(".json")).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
