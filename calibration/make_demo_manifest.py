"""Regenerate the shipped demo calibration manifest, deterministically.

    python calibration/make_demo_manifest.py            # rewrite volo_deploy/assets/calib_demo_digits_train_300.json
    python calibration/make_demo_manifest.py --check    # exit 1 if the shipped file differs

Digits train split (1,437 images, scikit-learn), stratified 30 per class = 300 images, seed 0.
Paths are relative to the digits ``train/`` folder; no machine-specific root is recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from volo_deploy.data.digits import write_digits_tree
from volo_deploy.data.layouts import open_dataset
from volo_deploy.data.sampler import SubsetManifest, demo_calibration_manifest, sample_subset, write_manifest

PER_CLASS, SEED = 30, 0


def build(workdir: Path) -> SubsetManifest:
    train = write_digits_tree(workdir, "train")
    m = sample_subset(open_dataset(train, expect_classes=10), per_class=PER_CLASS, seed=SEED)
    m.root = None  # relative to any digits train/ folder
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file instead of writing it")
    ap.add_argument("--out", type=Path, default=demo_calibration_manifest())
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        m = build(Path(tmp))
    if args.check:
        shipped = json.loads(args.out.read_text())
        if shipped != m.to_json():
            print(f"{args.out}: differs from a fresh build", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({len(m)} images, {m.content_hash()[:12]})")
        return 0
    write_manifest(m, args.out)
    print(f"wrote {args.out}: {len(m)} images, content hash {m.content_hash()[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
