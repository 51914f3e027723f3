"""Train the bundled demo VOLO on scikit-learn's digits (run by hand; CPU, a few minutes).

    python scripts/train_demo.py [--epochs 60] [--out volo_deploy/assets/volo_demo_64.safetensors]

Same model code as the real variants (config ``volo_demo``: 64x64 input, 10 classes),
same eval transform as every backend. Held-out split: ``volo_deploy.data.digits``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from volo_deploy.data.digits import load_digits_arrays
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.models import create_model

ROOT = Path(__file__).resolve().parent.parent


def preprocess(split: str, tf: EvalTransform) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_digits_arrays(split)
    x = np.stack([tf(Image.fromarray(im, mode="L")) for im in images])
    return torch.from_numpy(x), torch.from_numpy(labels)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 6 px and mild scale, via an affine grid."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3)
    scale = 1.0 + 0.15 * (torch.rand(b, generator=gen) - 0.5)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(b, 2, generator=gen) - 0.5) * 0.2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=ROOT / "volo_deploy" / "assets" / "volo_demo_64.safetensors")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create_model("volo_demo_64")
    tf = EvalTransform.for_config(model.cfg)
    xtr, ytr = preprocess("train", tf)
    xva, yva = preprocess("val", tf)
    print(f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M, train {len(xtr)}, val {len(xva)}")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = args.epochs * ((len(xtr) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(augment(xtr[idx], gen)), ytr[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            model.eval()
            with torch.no_grad():
                acc = (model(xva).argmax(1) == yva).float().mean().item()
            print(f"epoch {epoch + 1}: loss {loss.item():.3f} val top-1 {acc * 100:.2f}% ({time.time() - t0:.0f}s)")
    from safetensors.torch import save_file

    model.eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(args.out), metadata={"model": "volo_demo_64", "val_top1": f"{acc * 100:.2f}"})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), val top-1 {acc * 100:.2f}%")


if __name__ == "__main__":
    main()
