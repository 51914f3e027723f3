"""An ImageNet-shaped validation tree for the demo model, generated fast (never committed).

    python benchmarks/valtree.py OUT_DIR --images 50000

``OUT_DIR/val/ILSVRC2012_val_00000001.JPEG ...`` (flat, 1-based numbers), ``OUT_DIR/
ILSVRC2012_validation_ground_truth.txt`` (1-based devkit IDs, one line per image in sorted
order) and ``OUT_DIR/ILSVRC2012_devkit_t12/data/meta.mat`` mapping the 10 devkit IDs to 10
synsets in a shuffled (non-sorted) order, as the real devkit does, so a reader that takes the
GT numbers as class indices gets the labels wrong. Pictures: the demo's held-out digits
(scikit-learn, 360 images), upscaled to 72x72 RGB with per-copy noise, JPEG quality 90;
written by a process pool (about 10 s per 50,000 on two cores). Reused when complete.
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

SYNSETS = tuple(f"n{1440764 + 7919 * k:08d}" for k in range(10))  # sorted order = digit order
DEVKIT_ORDER = (3, 7, 0, 9, 5, 1, 8, 2, 6, 4)  # devkit ID i+1 names the synset of digit DEVKIT_ORDER[i]
SIDE = 72


def _write_range(args: tuple[str, int, int, int]) -> int:
    from PIL import Image

    from volo_deploy.data.digits import load_digits_arrays

    val, start, stop, seed = args
    images, _ = load_digits_arrays("val")
    rng = np.random.default_rng([seed, start])
    scale = np.ones((SIDE // 8, SIDE // 8), np.int16)
    for i in range(start, stop):
        img = np.kron(images[i % len(images)].astype(np.int16), scale)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([img] * 3, axis=-1)).save(Path(val) / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=90)
    return stop - start


def _write_meta(path: Path) -> None:
    from scipy.io import savemat

    arr = np.zeros((10, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for k, digit in enumerate(DEVKIT_ORDER):
        arr[k, 0] = (np.array([[k + 1]]), np.array([SYNSETS[digit]]), np.array([[0]]))
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"synsets": arr})


def make_val_tree(root: Path, n: int, workers: int | None = None, seed: int = 0) -> Path:
    """Write (or reuse) the tree of ``n`` images under ``root``; returns ``root/val``."""
    from volo_deploy.data.digits import load_digits_arrays

    root = Path(root)
    val = root / "val"
    gt = root / "ILSVRC2012_validation_ground_truth.txt"
    if gt.is_file() and len(gt.read_text().split()) == n and sum(1 for _ in os.scandir(val)) == n:
        return val
    val.mkdir(parents=True, exist_ok=True)
    for old in val.iterdir():
        old.unlink()
    _, labels = load_digits_arrays("val")
    devkit_id = {digit: k + 1 for k, digit in enumerate(DEVKIT_ORDER)}
    gt.write_text("".join(f"{devkit_id[int(labels[i % len(labels)])]}\n" for i in range(n)))
    _write_meta(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    step = 2000
    jobs = [(str(val), s, min(s + step, n), seed) for s in range(0, n, step)]
    with Pool(workers or os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_write_range, jobs))
    assert written == n
    return val


def remove_work(work: Path, keep: Path) -> None:
    """Remove what a benchmark made in its temp folder ``work`` except ``keep`` (its results); then ``work``
    itself when nothing is left."""
    import shutil

    for sub in [p for p in work.iterdir() if p != keep and keep not in p.parents]:
        shutil.rmtree(sub, ignore_errors=True) if sub.is_dir() else sub.unlink()
    if not any(work.iterdir()):
        work.rmdir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=50000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    val = make_val_tree(args.out, args.images)
    print(f"{val}: {args.images} JPEGs in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
