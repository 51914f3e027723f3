"""Make a calibration manifest from any supported dataset layout.

    python calibration/make_manifest.py /data/imagenet/train --total 1000 --seed 0 --out calib_in1k_1000.json
    python calibration/make_manifest.py /data/val --layout imagenet-val-gt --mapping meta.mat --per-class 1 --out m.json

Prints the layout, how labels were decided, and the subset. Errors exit 1 without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from volo_deploy.data.dataset import open_images
from volo_deploy.data.layouts import LAYOUTS
from volo_deploy.data.sampler import sample_subset, write_manifest
from volo_deploy.errors import VoloDeployError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="dataset folder or list file")
    ap.add_argument("--out", type=Path, required=True, help="manifest JSON to write")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), help="default: detected")
    ap.add_argument("--root", type=Path, help="list files: folder the paths are relative to")
    ap.add_argument("--labels", type=Path, help="GT txt / Kaggle csv when not next to the images")
    ap.add_argument("--mapping", type=Path, help="devkit meta.mat / 'ID synset' txt, or LOC_synset_mapping.txt")
    ap.add_argument("--classes", type=int, help="the model's num_classes (checked)")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--per-class", type=int, help="images per class")
    size.add_argument("--total", type=int, help="images in total, spread over classes (default: 300..1000)")
    ap.add_argument("--min-per-class", type=int, help="--total mode: refuse classes with fewer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    opts = {k: v for k, v in (("labels", args.labels), ("mapping", args.mapping)) if v is not None}
    try:
        data = open_images(args.data, args.layout, args.root, expect_classes=args.classes, **opts)
        m = sample_subset(
            data, per_class=args.per_class, total=args.total, seed=args.seed, min_per_class=args.min_per_class
        )
        write_manifest(m, args.out)
    except VoloDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(data.describe())
    for n in data.notes:
        print(f"  {n}")
    print(f"wrote {args.out}: {len(m)} images ({m.method} {m.size}, seed {m.seed}), hash {m.content_hash()[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
