"""Streamed evaluation at scale on the demo model: peak RSS vs number of images, Ray workers.

    python benchmarks/eval_scaling.py [--sizes 1500,6000] [--ray-images 1500] [--skip-ray]

1. Peak RSS (``getrusage`` max RSS of a fresh process) of ``volo-bench --backends torch`` at each
   size, next to the in-memory path (``load_eval_set`` + FP32 reference on all images at once,
   what volo-bench did before streaming). Goal: streamed 6,000 <= streamed 1,500 + 40 MB.
2. Images/s of the same run with ``--ray`` on a local Ray of 1 vs 2 CPUs (each a fresh process
   and a fresh reference cache, so each evaluates every image twice: reference + torch case).
3. Decoding alone: images/s of the thread pool vs the process pool vs inline (2 workers).

Images: the demo digits, upscaled to 72x72 RGB PNGs with per-copy noise, written once to a
temp folder as an ImageFolder tree (``--sizes`` max images).

Measured on the 2-core AMD EPYC (Zen 4, AVX-512) dev box while 5 other jobs shared it, twice
(load average 8-9, then 4-7), so the speeds are noisy; peak RSS does not depend on the load::

    | images | streamed peak RSS MB | streamed s  | in-memory peak RSS MB | in-memory s |
    | 1500   | 291 / 291            | 25.2 / 19.1 | 378 / 378             | 26.1 / 6.9  |
    | 6000   | 293 / 293            | 108.6 / 56.6| 799 / 799             | 61.6 / 25.5 |
    streamed: +2 MB from 1500 to 6000 images (goal <= +40 MB); in-memory: +422 MB
    decode only (images/s, batch 8): inline 658 / 1425, 2 threads 781 / 1195, 2 processes 985 / 688
    Ray, 1500 images (3000 evaluated): 1 CPU 63.5 / 91.5 img/s, 2 CPUs 76.0 / 104.6 img/s (1.20x / 1.14x)

"streamed s" is a whole ``volo-bench`` run (reference and the torch case: every image twice,
plus export and latency); "in-memory s" only decodes and runs the reference once. Decoding
alone gains nothing reliable from a pool on two busy cores (the order flips between runs); the
pool's use is to decode while the model runs. With both cores also busy with other jobs, two
Ray workers gain 1.1-1.2x, not 2x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--backends", "torch", "--batch-sizes", "1,8", "--warmup", "1", "--iters", "5", "--threads", "1", "--quiet",
          "--shard-size", "250"]


def write_images(root: Path, n: int) -> Path:
    """``n`` 72x72 RGB PNGs of the demo digits (ImageFolder), reused when already there."""
    import numpy as np
    from PIL import Image

    from volo_deploy.data.digits import load_digits_arrays

    out = root / f"digits72_{n}"
    if out.is_dir() and sum(1 for _ in out.glob("*/*.png")) == n:
        return out
    images, labels = load_digits_arrays("val")
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.kron(images[i % len(images)], np.ones((9, 9), np.uint8)).astype(np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        d = out / str(int(labels[i % len(labels)]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([img] * 3, axis=-1)).save(d / f"img_{i:05d}.png")
    return out


def run_child(code: str, cache: Path) -> tuple[float, float]:
    """(peak RSS MB of the process itself, as it prints last, wall seconds) of ``python -c code``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "VOLO_DEPLOY_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1]), wall


def bench_code(data: Path, n: int, out: Path, extra: list[str]) -> str:
    args = [*COMMON, "--data", str(data), "--limit", str(n), "--out", str(out), *extra]
    return ("import resource, sys\nfrom volo_deploy.cli.bench import main\nrc = main(%r)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\nsys.exit(rc)\n" % args)


def in_memory_code(data: Path, n: int) -> str:
    return (
        "import resource\nfrom volo_deploy.models import load_model\nfrom volo_deploy.harness.data import load_eval_set\n"
        "from volo_deploy.export.validate import torch_logits\nimport torch\ntorch.set_num_threads(1)\n"
        "m, _ = load_model(None, None)\n"
        f"ev = load_eval_set(m.cfg, {str(data)!r}, {n}, progress=False)\nref = torch_logits(m, ev.x, batch=8)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )


def ray_code(data: Path, n: int, out: Path, cpus: int) -> str:
    return ("import ray\nray.init(num_cpus=%d, include_dashboard=False, log_to_driver=False)\n" % cpus
            + bench_code(data, n, out, ["--ray", "local"]))


def decode_rate(data: Path, n: int) -> dict[str, float]:
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.data.dataset import decode_batches
    from volo_deploy.harness.data import open_eval_items
    from volo_deploy.models import get_config

    cfg = get_config("volo_demo_64")
    sel = open_eval_items(cfg, data, n)
    tf = EvalTransform.for_config(cfg)
    rates = {}
    for label, workers, mode in (("inline", 0, "thread"), ("2 threads", 2, "thread"), ("2 processes", 2, "process")):
        t0 = time.perf_counter()
        count = sum(len(b.x) for b in decode_batches(sel.root, sel.items, tf, 8, workers, mode))
        rates[label] = count / (time.perf_counter() - t0)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1500,6000")
    ap.add_argument("--ray-images", type=int, default=1500)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.gettempdir()) / "volo_eval_scaling"
    data = write_images(work, max(sizes))
    print(f"data: {data} ({max(sizes)} PNGs 72x72)")
    print("\n| images | streamed peak RSS MB | streamed s | in-memory peak RSS MB | in-memory s |\n|---|---|---|---|---|")
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            s_rss, s_wall = run_child(bench_code(data, n, Path(tmp) / "out", []), Path(tmp) / "cache")
            m_rss, m_wall = run_child(in_memory_code(data, n), Path(tmp) / "cache")
        rows.append((n, s_rss, m_rss))
        print(f"| {n} | {s_rss:.0f} | {s_wall:.1f} | {m_rss:.0f} | {m_wall:.1f} |")
    if len(rows) > 1:
        print(f"\nstreamed: +{rows[-1][1] - rows[0][1]:.0f} MB from {rows[0][0]} to {rows[-1][0]} images "
              f"(goal <= +40 MB); in-memory: +{rows[-1][2] - rows[0][2]:.0f} MB")
    rates = decode_rate(data, min(sizes))
    print("\ndecode only (images/s, batch 8): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    if args.skip_ray:
        return
    print(f"\n| Ray CPUs | images evaluated | wall s | images/s |\n|---|---|---|---|")
    base = None
    for cpus in (1, 2):
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            _, wall = run_child(ray_code(data, args.ray_images, Path(tmp) / "out", cpus), Path(tmp) / "cache")
        rate = 2 * args.ray_images / wall  # reference + torch case
        base = base or rate
        print(f"| {cpus} | {2 * args.ray_images} | {wall:.1f} | {rate:.1f} ({rate / base:.2f}x) |")


if __name__ == "__main__":
    main()
