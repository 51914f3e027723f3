#!/usr/bin/env python3
"""Check the built engine on the target: run it on the reference inputs stored at export and compare
with their FP32 PyTorch logits; exit 1 past the precision's tolerance (the export's own limits).

Needs only ``tensorrt`` and ``numpy`` (and ``libcudart``, as ``infer.py``). ``build_engine.sh`` runs it
last; run it again after moving the bundle or changing TensorRT:

    python3 check_engine.py                      # the engine of bundle.json
    python3 check_engine.py --polygraphy         # also through Polygraphy's TrtRunner, where installed

Written by volo_deploy (volo-export --emit-only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import infer  # noqa: E402  (next to this file)


def compare(ref: np.ndarray, out: np.ndarray) -> dict:
    """Error statistics of ``out`` against ``ref`` (N, classes): as volo_deploy's export validation."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    if ref.shape != out.shape:
        raise SystemExit(f"error: engine output shape {out.shape} differs from the reference {ref.shape}")
    diff = np.abs(out - ref)
    denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(denom > 0, (ref * out).sum(axis=1) / np.maximum(denom, 1e-300), 1.0)
    scale = float(np.abs(ref).max())
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max() / scale) if scale > 0 else 0.0,
            "min_cosine": float(cos.min()), "agreement": float((ref.argmax(1) == out.argmax(1)).mean())}


LIMITS = (("max_abs", "max abs error", "max_abs", "<="), ("max_rel", "max relative error", "max_rel", "<="),
          ("min_cosine", "min cosine similarity", "min_cosine", ">="),
          ("min_agreement", "top-1 agreement", "agreement", ">="))


def violations(stats: dict, tolerance: dict) -> list[str]:
    """Every limit of ``tolerance`` (the manifest's keys) that ``stats`` breaks, as text."""
    bad = []
    for key, label, stat, op in LIMITS:
        if key not in tolerance:
            continue
        value, limit = stats[stat], tolerance[key]
        if not (value <= limit if op == "<=" else value >= limit):
            bad.append(f"{label} {value:.3g} (limit {op} {limit:.3g})")
    return bad


def polygraphy_outputs(engine_path: Path, plugin: Path, inputs: np.ndarray, meta: dict) -> np.ndarray | None:
    """The engine's outputs through Polygraphy's TrtRunner (an independent runner); None if not installed."""
    try:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        return None
    import tensorrt as trt

    trt.get_plugin_registry().load_library(str(plugin.resolve()))
    outs = []
    with TrtRunner(EngineFromBytes(engine_path.read_bytes())) as runner:
        for x in inputs:
            outs.append(np.asarray(runner.infer({meta["input"]: x[None]})[meta["output"]], np.float32)[0])
    return np.stack(outs)


def report(what: str, stats: dict, bad: list[str], n: int, precision: str) -> int:
    print(f"{what}: {n} reference images vs FP32 PyTorch: max abs {stats['max_abs']:.3g}, max rel "
          f"{stats['max_rel']:.3g}, cosine {stats['min_cosine']:.6f}, top-1 agreement {stats['agreement']:.1%}")
    if bad:
        print(f"error: {what} ({precision}) is past the export's tolerance: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None, trt=None, cuda=None) -> int:
    meta = json.loads((HERE / "bundle.json").read_text())
    ap = argparse.ArgumentParser(description=f"check {meta['model']} ({meta['precision']}) against FP32 PyTorch")
    ap.add_argument("--engine", type=Path, default=HERE / meta["engine_file"])
    ap.add_argument("--plugin", type=Path, default=HERE / meta["plugin_lib"])
    ap.add_argument("--polygraphy", action="store_true", help="also run the engine with Polygraphy's TrtRunner")
    args = ap.parse_args(argv)
    check = meta["check"]
    with np.load(HERE / check["file"]) as ref:
        inputs, logits = ref["inputs"], ref["logits"]
    net = infer.Engine(args.engine, args.plugin, trt=trt, cuda=cuda)
    stats = compare(logits, net.run(inputs))
    rc = report(args.engine.name, stats, violations(stats, check["tolerance"]), len(inputs), meta["precision"])
    if args.polygraphy:
        poly = polygraphy_outputs(args.engine, args.plugin, inputs, meta)
        if poly is None:
            print("polygraphy: not installed (pip install polygraphy); skipped")
        else:
            stats = compare(logits, poly)
            rc |= report("polygraphy TrtRunner", stats, violations(stats, check["tolerance"]), len(inputs),
                         meta["precision"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
