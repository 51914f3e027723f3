"""50,000 images streamed through ``volo-bench``: flat memory, images/s, decode vs model, kill + resume.

    nice -n 19 python benchmarks/bench_50k.py [--images 50000] [--work DIR] [--out DIR]

1. An ImageNet-shaped val tree (``benchmarks/valtree.py``: flat ``ILSVRC2012_val_*.JPEG``, devkit
   ground truth + ``meta.mat``) of ``--images`` small JPEGs in a temp folder.
2. Run A, uninterrupted: ``volo-bench`` (the bundled demo model) over onnxruntime and openvino, fp32
   and int8, in a child process polled every 0.2 s: resident memory (psutil, the process and its
   children) and the shard files as they appear. Per pass (the FP32 reference, then each case)
   the peak RSS from the pass's start until it has streamed 10%, 50% and 100% of the images
   (5k, 25k, 50k at full size), and its images/s from the shard files' mtimes.
3. Run B: the same command in another ``--out`` (same reference cache and ``--artifacts``),
   SIGKILLed from outside once ``--kill-at`` (60%) of the case shards exist, then the same
   command plus ``--resume``. Its final report must equal run A's in accuracy, agreement and
   counts (latency is measured per run and differs).
4. Decode vs model: a slice of the images decoded inline, then each artifact (and the FP32
   PyTorch reference) run on the decoded batches, one thread, timed apart: the CPU-time share
   of each. (volo-bench overlaps the two: decoding runs in a thread pool ahead of the model.)

Writes ``bench_50k.json`` and ``bench_50k.txt`` (the printout) into ``--out``; runs' reports in
``--out/run_a`` and ``--out/run_b``. Each figure carries the load average when it was taken.

Measured 2026-12-07, full 50,000 images, on the 2-core AMD EPYC (Zen 5, AVX-512 VNNI) dev box
shared with 6 other jobs (load average 8.7 at the start, 14-24 during the runs; images/s are
therefore low and noisy, memory is not). Tree made in 57 s; run A 1894 s::

    | pass             | peak RSS MB at 5,000 | at 25,000 | at 50,000 | spread MB | images/s |
    | reference        | 285.9                | 286.5     | 287.0     | 1.1       | 98.3     |
    | onnxruntime_fp32 | 526.9                | 526.9     | 526.9     | 0.0       | 183.9    |
    | onnxruntime_int8 | 604.0                | 604.0     | 604.0     | 0.0       | 190.1    |
    | openvino_fp32    | 667.1                | 667.1     | 667.1     | 0.0       | 178.7    |
    | openvino_int8    | 687.6                | 688.4     | 688.7     | 1.1       | 139.7    |
    run B: SIGKILLed after 120 of 200 case shards (784 s), --resume 305 s: accuracy, agreement
    and counts identical to run A: True (50,000 images per row)
    decode vs model, CPU s per 1000 images, 1 thread: decode 0.53; torch 1.46 (decode 26.6%),
    onnxruntime fp32 0.48 (52.4%), int8 0.60 (46.8%), openvino fp32 0.87 (37.9%), int8 0.76 (41.1%)

The step between passes is each runtime's libraries and session, loaded once; within a pass
memory is flat.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
CASES = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
CHECKPOINTS = (0.1, 0.5, 1.0)
LINES: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_cmd(data: Path, out: Path, art: Path, args, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-c", "import sys; from volo_deploy.cli.bench import main; sys.exit(main(sys.argv[1:]))",
           "--data", str(data), "--backends", "onnxruntime,openvino", "--precisions", "fp32,int8",
           "--threads", str(args.threads), "--batch-sizes", "1,8", "--warmup", "2", "--iters", "20", "--quiet",
           "--shard-size", str(args.shard_size), "--out", str(out), "--artifacts", str(art)]
    return cmd + (["--resume"] if resume else [])


class Passes:
    """Shard files of each pass (reference cache, then each case's shard folder) and RSS per pass."""

    def __init__(self, cache: Path, out: Path, n_shards: int) -> None:
        self.dirs = [("reference", cache / "reference")] + [(f"{b}_{p}", out / "shards" / f"{b}_{p}") for b, p in CASES]
        self.n = n_shards
        self.peak: dict[str, float] = {}
        self.at: dict[str, dict[str, float]] = {name: {} for name, _ in self.dirs}

    def files(self, name: str, folder: Path) -> list[Path]:
        pattern = "*/*.npz" if name == "reference" else "*.npz"
        return sorted(folder.glob(pattern)) if folder.exists() else []

    def counts(self) -> dict[str, int]:
        return {name: len(self.files(name, d)) for name, d in self.dirs}

    def sample(self, rss_mb: float) -> dict[str, int]:
        counts = self.counts()
        current = next((name for name, _ in self.dirs if counts[name] < self.n), None)
        if current is not None and counts[current] > 0:  # streaming (export and calibration come before)
            self.peak[current] = max(self.peak.get(current, 0.0), rss_mb)
        for name, _ in self.dirs:
            if name in self.peak:
                for frac in CHECKPOINTS:
                    key = f"{frac:.0%}"
                    if counts[name] >= max(1, round(frac * self.n)) and key not in self.at[name]:
                        self.at[name][key] = round(self.peak[name], 1)
        return counts

    def rates(self, shard_images: list[int]) -> dict[str, float | None]:
        """images/s of each pass from its shard files' mtimes (first shard's images not counted)."""
        out = {}
        for name, folder in self.dirs:
            times = sorted(p.stat().st_mtime for p in self.files(name, folder))
            span = times[-1] - times[0] if len(times) > 1 else 0
            out[name] = round((sum(shard_images) - shard_images[0]) / span, 1) if span > 0 else None
        return out


def tree_rss_mb(proc) -> float:
    import psutil

    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def run_child(cmd: list[str], env: dict, passes: Passes | None, kill_at_shards: int | None = None
              ) -> tuple[int, float, bool]:
    """(exit code, wall s, killed) of ``cmd``, sampling RSS into ``passes``; SIGKILL once the cases
    have ``kill_at_shards`` shard files."""
    import psutil

    t0 = time.perf_counter()
    log = open(env["BENCH_LOG"], "a")
    child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = psutil.Process(child.pid)
    killed = False
    while child.poll() is None:
        counts = passes.sample(tree_rss_mb(proc)) if passes else {}
        if kill_at_shards is not None and sum(v for k, v in counts.items() if k != "reference") >= kill_at_shards:
            os.kill(child.pid, signal.SIGKILL)
            killed = True
            child.wait()
            break
        time.sleep(0.2)
    log.close()
    return child.wait(), time.perf_counter() - t0, killed


def figures(report: dict) -> dict:
    """What a resumed run must reproduce exactly: accuracy, agreement and counts."""
    rows = {f"{r['backend']}_{r['precision']}": {"status": r["status"], "accuracy": r["accuracy"],
                                                  "agreement": r["agreement"]} for r in report["results"]}
    data = report["data"]
    return {"rows": rows, "reference": report["reference"],
            "counts": {k: data.get(k) for k in ("n_images", "total_available", "num_classes")},
            "skipped_images": data.get("skipped_images")}


def decode_vs_model(data: Path, report: dict, n: int, threads: int) -> dict:
    """CPU seconds per 1000 images: inline decode, and each model on the decoded batches."""
    import numpy as np
    import torch

    from volo_deploy.backends.base import run_in_chunks
    from volo_deploy.data.dataset import decode_batches
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.export.validate import torch_logits
    from volo_deploy.harness.data import open_eval_items
    from volo_deploy.harness.evaljob import load_runner
    from volo_deploy.models import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(None, None)
    sel = open_eval_items(model.cfg, data, n)
    tf = EvalTransform.for_config(model.cfg)
    t0 = time.process_time()
    batches = [b.x for b in decode_batches(sel.root, sel.items, tf, 8, workers=0)]
    per_k = {"decode": (time.process_time() - t0) / n * 1000}
    t0 = time.process_time()
    for x in batches:
        torch_logits(model.eval(), x, batch=8)
    per_k["torch_fp32 (reference)"] = (time.process_time() - t0) / n * 1000
    for row in report["results"]:
        runner = load_runner(row["backend"], row["precision"], Path(row["artifact"]["dir"]) / row["artifact"]["model_file"],
                             threads)
        fixed = runner.input_shape[0]
        t0 = time.process_time()
        for x in batches:
            np.asarray(run_in_chunks(runner.run, x, fixed or 8, pad=bool(fixed)))
        per_k[f"{row['backend']}_{row['precision']}"] = (time.process_time() - t0) / n * 1000
        runner.close()
    dec = per_k["decode"]
    return {"images": n, "cpu_s_per_1000": {k: round(v, 3) for k, v in per_k.items()},
            "decode_share_pct": {k: round(100 * dec / (dec + v), 1) for k, v in per_k.items() if k != "decode"}}


def run_a(args, data: Path, env: dict, n_shards: int, shard_images: list[int]) -> tuple[dict, dict]:
    passes = Passes(Path(env["VOLO_DEPLOY_CACHE"]), args.out / "run_a", n_shards)
    say(f"run A (uninterrupted), {load()}")
    rc, wall, _ = run_child(bench_cmd(data, args.out / "run_a", args.out / "artifacts", args), env, passes)
    if rc != 0:
        raise SystemExit(f"run A failed ({rc}); see {env['BENCH_LOG']}")
    report = json.loads((args.out / "run_a" / "report.json").read_text())
    rates = passes.rates(shard_images)
    labels = [f"{round(f * args.images):,}" for f in CHECKPOINTS]
    say(f"run A: {wall:.0f} s wall, {load()}\n")
    say("| pass | " + " | ".join(f"peak RSS MB at {x}" for x in labels) + " | spread MB | images/s |")
    say("|---|" + "---|" * (len(labels) + 2))
    table = {}
    for name, _ in passes.dirs:
        at = [passes.at[name].get(f"{f:.0%}") for f in CHECKPOINTS]
        spread = round(max(at) - min(at), 1) if None not in at else None
        table[name] = {"peak_rss_mb": dict(zip(labels, at)), "spread_mb": spread, "images_per_s": rates[name]}
        say(f"| {name} | " + " | ".join(f"{v}" for v in at) + f" | {spread} | {rates[name]} |")
    return report, {"wall_s": round(wall, 1), "passes": table, "load_after": os.getloadavg()}


def run_b(args, data: Path, env: dict, n_shards: int, ref: dict) -> dict:
    out = args.out / "run_b"
    kill_at = max(1, round(args.kill_at * n_shards * len(CASES)))
    say(f"\nrun B: SIGKILL after {kill_at} of {n_shards * len(CASES)} case shards, {load()}")
    rc, wall1, killed = run_child(bench_cmd(data, out, args.out / "artifacts", args), env, Passes(
        Path(env["VOLO_DEPLOY_CACHE"]), out, n_shards), kill_at)
    on_disk = sum(1 for _ in (out / "shards").glob("*/*.npz"))
    say(f"run B: killed={killed} (exit {rc}) after {wall1:.0f} s with {on_disk} shard files on disk; report.json "
        f"{'exists' if (out / 'report.json').exists() else 'absent'}")
    rc2, wall2, _ = run_child(bench_cmd(data, out, args.out / "artifacts", args, resume=True), env, None)
    if rc2 != 0:
        raise SystemExit(f"run B --resume failed ({rc2}); see {env['BENCH_LOG']}")
    resumed = json.loads((out / "report.json").read_text())
    same = figures(resumed) == figures(ref)
    say(f"run B --resume: {wall2:.0f} s, {load()}; accuracy, agreement and counts identical to run A: {same}")
    return {"killed": killed, "kill_exit": rc, "shards_on_disk_at_kill": on_disk, "kill_after_case_shards": kill_at,
            "case_shards": n_shards * len(CASES), "killed_after_s": round(wall1, 1), "resume_s": round(wall2, 1),
            "identical": same, "figures": figures(resumed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kill-at", type=float, default=0.6)
    ap.add_argument("--decode-sample", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=None, help="where the image tree goes (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: <work>/results)")
    args = ap.parse_args()
    from valtree import make_val_tree

    from volo_deploy.harness.shards import plan_shards
    from volo_deploy.machine import describe_machine

    work = args.work or Path(tempfile.mkdtemp(prefix="volo_50k_"))
    args.out = args.out or work / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = make_val_tree(work / "imagenet", args.images)
    say(f"data: {data}: {args.images} JPEGs 72x72 (devkit GT + meta.mat) made in {time.perf_counter() - t0:.1f} s")
    machine = describe_machine()
    cpu = machine.get("cpu") or {}
    say(f"machine: {cpu.get('model')} ({cpu.get('id')}; {', '.join(cpu.get('features', []))}), "
        f"{os.cpu_count()} CPUs; {load()}")
    shards = plan_shards(args.images, args.shard_size, 8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "VOLO_DEPLOY_CACHE": str(work / "cache"), "BENCH_LOG": str(args.out / "volo_bench.log")}
    report, a = run_a(args, data, env, len(shards), [b - s for s, b in shards])
    b = run_b(args, data, env, len(shards), report)
    say(f"\ndecode vs model ({args.decode_sample} images, 1 thread), {load()}")
    dvm = decode_vs_model(data, report, args.decode_sample, args.threads)
    for k, v in dvm["decode_share_pct"].items():
        say(f"  {k}: decode {dvm['cpu_s_per_1000']['decode']:.2f} s, model {dvm['cpu_s_per_1000'][k]:.2f} s "
            f"per 1000 images -> decode {v}% of the time")
    result = {"images": args.images, "shard_size": args.shard_size, "threads": args.threads, "machine": machine,
              "cpu_count": os.cpu_count(), "run_a": a, "run_b": b, "decode_vs_model": dvm,
              "run_a_figures": figures(report), "load_end": os.getloadavg()}
    (args.out / "bench_50k.json").write_text(json.dumps(result, indent=1, default=str))
    (args.out / "bench_50k.txt").write_text("\n".join(LINES) + "\n")
    if args.work is None:  # a temp folder of ours: the images and caches go, the results stay
        from valtree import remove_work

        remove_work(work, keep=args.out)
    print(f"\nwrote {args.out / 'bench_50k.json'} and {args.out / 'bench_50k.txt'}")


if __name__ == "__main__":
    main()
