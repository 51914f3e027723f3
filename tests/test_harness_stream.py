"""Streamed evaluation: same figures as the in-memory path, reference cache, resume after a kill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from volo_deploy.harness.bench import BenchConfig, run_bench
from volo_deploy.logs import capture
from volo_deploy.harness.stats import agreement_stats, topk_accuracy
from volo_deploy.harness.stream import AgreementAccumulator, accuracy_from_topk, topk_indices

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
EXACT = ("n", "top1_agreement_pct", "max_abs", "max_rel", "cosine_min")  # order-free: bit-identical
SUMMED = ("mean_abs", "cosine_mean")  # sums in another order


def comparable(report: dict) -> dict:
    """What "identical reports" means here: data, reference accuracy, and per case status, accuracy,
    agreement and image count (not timestamps, latency samples, logs or memory)."""
    return {
        "data": report["data"],
        "fingerprints": {k: report["fingerprints"][k] for k in ("model", "data")},
        "reference": report["reference"],
        "results": [(r["backend"], r["precision"], r["status"], r["accuracy"], r["agreement"]) for r in report["results"]],
    }


def test_accumulator_over_uneven_batches_matches_compare_logits():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(203, 10)).astype(np.float32)
    out = (ref + rng.normal(scale=0.4, size=ref.shape)).astype(np.float32)
    out[5] = 0.0  # a zero row: cosine 1 by definition, as in compare_logits
    parts = [AgreementAccumulator(), AgreementAccumulator()]
    for k, (a, b) in enumerate([(0, 7), (7, 100), (100, 101), (101, 203)]):
        parts[k // 2].update(ref[a:b], out[a:b])
    merged = AgreementAccumulator.from_state(parts[0].state()).merge(parts[1])
    got, want = merged.result(), agreement_stats(ref, out)
    assert got["top1_agreement_pct"] < 100.0
    for k in EXACT:
        assert got[k] == want[k], k
    for k in SUMMED:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k
    labels = rng.integers(0, 10, len(out))
    assert accuracy_from_topk(topk_indices(out), labels, 10) == topk_accuracy(out, labels)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return tmp_path_factory.mktemp("stream_artifacts")


def _cfg(art: Path, **kw) -> BenchConfig:
    base = dict(backends=("onnxruntime",), precisions=("fp32",), limit=48, batch_sizes=(1, 8), warmup=0, iters=2,
                threads=1, progress=False, artifacts=art, shard_size=16)
    return BenchConfig(**{**base, **kw})


def test_streamed_figures_equal_the_in_memory_path(art, monkeypatch):
    from volo_deploy import machine
    from volo_deploy.export.validate import torch_logits
    from volo_deploy.harness.data import load_eval_set
    from volo_deploy.harness.evaljob import load_runner
    from volo_deploy.backends.base import run_in_chunks
    from volo_deploy.models import load_model

    # 7-bit weights on every CPU kind: on these 120 images they disagree with FP32 somewhere (8-bit may not)
    monkeypatch.setattr(machine, "has_int8_dot_product", lambda: False)
    report = run_bench(_cfg(art, precisions=("int8",), limit=120, shard_size=20))
    row = report["results"][0]
    assert row["status"] == "ok" and report["execution"]["shards"] == 5  # 20 rounded up to 24 (batch 8)
    model, _ = load_model(None, None)
    ev = load_eval_set(model.cfg, None, 120, progress=False)
    ref = torch_logits(model, ev.x, batch=8)
    runner = load_runner("onnxruntime", "int8", Path(row["artifact"]["dir"]) / row["artifact"]["model_file"], 1)
    out = run_in_chunks(runner.run, ev.x, 8).astype(np.float32)
    runner.close()
    want = agreement_stats(ref, out)
    assert want["top1_agreement_pct"] < 100.0  # int8: a case where agreement means something
    for k in EXACT:
        assert row["agreement"][k] == want[k], k
    for k in SUMMED:
        assert row["agreement"][k] == pytest.approx(want[k], rel=1e-12), k
    acc = topk_accuracy(out, ev.labels)
    assert {k: row["accuracy"][k] for k in acc} == acc
    assert report["reference"]["accuracy"] == topk_accuracy(ref, ev.labels)
    assert report["data"]["fingerprint"] == ev.fingerprint and report["data"]["n_images"] == 120


def test_reference_cache_hit_then_rejected_on_model_data_or_corruption(art, tmp_path, deterministic_checkpoint):
    logs: list[str] = []
    cfg = _cfg(art, backends=("torch",), limit=32)
    with capture(logs):
        first = run_bench(cfg)
    assert first["execution"]["reference_cache"]["reference_computed"] == 2
    logs.clear()
    with capture(logs):
        second = run_bench(cfg)
    assert "reference: 2 of 2 shard(s) from the cache" in " ".join(logs)
    assert comparable(second) == comparable(first)

    cache = Path(second["execution"]["reference_cache"]["dir"])
    blob = bytearray((cache / "00001.npz").read_bytes())
    blob[-40] ^= 0xFF
    (cache / "00001.npz").write_bytes(bytes(blob))
    logs.clear()
    with capture(logs):
        third = run_bench(cfg)
    assert any("00001.npz: rejected, content hash mismatch" in s for s in logs)
    assert third["execution"]["reference_cache"] == {**second["execution"]["reference_cache"],
                                                    "reference_cached": 1, "reference_computed": 1}
    assert comparable(third) == comparable(first)

    other = deterministic_checkpoint("volo_demo_64", seed=1)
    other_model = run_bench(_cfg(tmp_path / "art2", backends=("torch",), limit=32, checkpoint=other))
    assert other_model["execution"]["reference_cache"]["reference_computed"] == 2

    import shutil

    from volo_deploy.harness.data import demo_data_dir

    data = tmp_path / "val"
    shutil.copytree(demo_data_dir(), data)
    assert run_bench(_cfg(art, backends=("torch",), limit=32, data=data))[
        "execution"]["reference_cache"]["reference_cached"] == 2  # same files, same content: a hit
    from volo_deploy.harness.data import open_eval_items
    from volo_deploy.models import get_config

    picked = open_eval_items(get_config("volo_demo_64"), data, 32).items
    victim, donor = data / picked[10][0], data / picked[20][0]
    shutil.copy(donor, victim)  # same path and label, another image
    changed = run_bench(_cfg(art, backends=("torch",), limit=32, data=data))
    assert changed["execution"]["reference_cache"]["reference_computed"] == 2
    shutil.copy(data / picked[30][0], data / picked[11][0])  # changed again: the log says what changed
    logs.clear()
    with capture(logs):
        run_bench(_cfg(art, backends=("torch",), limit=32, data=data))
    assert any(s.startswith("reference cache: stale for") and "(data changed since" in s for s in logs), logs


def _cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "volo_deploy.cli.bench", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_resume_after_sigkill_gives_the_uninterrupted_report(art, tmp_path):
    from volo_deploy.cli.bench import main as bench_main
    from volo_deploy.harness.shards import KILL_AFTER_ENV

    args = ["--backends", "torch,onnxruntime", "--precisions", "fp32", "--limit", "48", "--shard-size", "8",
            "--batch-sizes", "1,8", "--warmup", "0", "--iters", "2", "--threads", "1", "--quiet",
            "--artifacts", str(art)]
    whole = tmp_path / "whole"
    assert bench_main([*args, "--out", str(whole)]) == 0
    out = tmp_path / "killed"
    # torch: 6 shards, then onnxruntime: SIGKILL right after its 3rd shard file
    killed = _cli([*args, "--out", str(out)], {KILL_AFTER_ENV: "9"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "report.json").exists()
    assert len(list((out / "shards" / "onnxruntime_fp32").glob("*.npz"))) == 3
    assert not list((out / "shards").rglob("*.tmp"))  # atomic writes: nothing half-written

    assert bench_main([*args, "--limit", "40", "--out", str(out), "--resume"]) == 2  # another config: refused
    assert bench_main([*args, "--out", str(out), "--resume"]) == 0
    resumed, uninterrupted = (json.loads((p / "report.json").read_text()) for p in (out, whole))
    assert resumed["execution"]["resumed"] is True
    assert comparable(resumed) == comparable(uninterrupted)
    assert [r["agreement"]["n"] for r in resumed["results"]] == [48, 48]


def test_resume_refusals_name_the_file_and_the_difference(art, tmp_path, capsys):
    from volo_deploy.cli.bench import main as bench_main

    args = ["--backends", "torch", "--limit", "16", "--shard-size", "8", "--iters", "1", "--warmup", "0", "--quiet",
            "--artifacts", str(art), "--out", str(tmp_path / "o")]
    assert bench_main([*args, "--resume"]) == 2
    assert "no interrupted run" in capsys.readouterr().err
    assert bench_main(args) == 0
    assert bench_main([*args, "--resume", "--iters", "3"]) == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "iters expected 3, found 1" in err


def test_unreadable_images_are_skipped_listed_and_left_out_of_the_fingerprint(art, digits_root, tmp_path):
    import shutil
    import warnings

    from volo_deploy.harness.data import load_eval_set
    from volo_deploy.models import get_config

    files = sorted((digits_root / "val").glob("*/*.png"))[::30]
    for f in files:
        shutil.copy(f, tmp_path / f"{f.parent.name}_{f.name}")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    lines = [f"{f.parent.name}_{f.name} {f.parent.name}" for f in files]
    lines.insert(5, "broken.png 3")
    listing = tmp_path / "subset.txt"
    listing.write_text("\n".join(lines) + "\n")
    logs: list[str] = []
    with capture(logs):
        report = run_bench(_cfg(art, backends=("torch",), data=listing, limit=None, shard_size=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = load_eval_set(get_config("volo_demo_64"), listing, progress=False)
    d = report["data"]
    assert d["n_images"] == len(files) and d["total_available"] == len(files) + 1
    assert len(d["skipped_images"]) == 1 and d["skipped_images"][0].startswith("broken.png: ")
    assert d["fingerprint"] == in_memory.fingerprint
    assert report["results"][0]["agreement"]["n"] == len(files)
    assert d["skipped"] == {"count": 1, "paths": ["broken.png"]}
    warned = [s for s in logs if "unreadable image(s) skipped" in s]  # one warning for the run, not one per row
    assert len(warned) == 1 and warned[0].startswith("1 unreadable image(s) skipped") and "broken.png" in warned[0]


def test_a_runtime_failing_on_the_data_fails_its_case_only(art, monkeypatch):
    from volo_deploy.harness import evaljob

    real = evaljob.load_runner

    def flaky(backend, *args, **kw):
        if backend == "onnxruntime":
            raise RuntimeError("simulated runtime crash on the data")
        return real(backend, *args, **kw)

    monkeypatch.setattr(evaljob, "load_runner", flaky)
    report = run_bench(_cfg(art, backends=("torch", "onnxruntime"), limit=16))
    ok, failed = report["results"]
    assert ok["status"] == "ok" and ok["agreement"]["n"] == 16
    assert failed["status"] == "run failed" and "simulated runtime crash" in failed["reason"]
    assert failed["accuracy"] is None and failed["agreement"] is None  # not the latency batch's figures
    assert set(failed["latency"]) == {"1", "8"}  # timed before the data ran


def test_resume_re_runs_a_case_whose_artifact_changed_and_drops_its_shards(tmp_path):
    kw = dict(limit=32, artifacts=tmp_path / "art", out=tmp_path / "out")
    first = run_bench(_cfg(tmp_path / "art", **kw))
    case_dir = tmp_path / "out" / "shards" / "onnxruntime_fp32"
    sorted(case_dir.glob("*.npz"))[-1].unlink()  # as if killed before the last shard
    model_file = next((tmp_path / "art" / "onnxruntime_fp32").glob("*.onnx"))
    model_file.write_bytes(model_file.read_bytes() + b"\0")  # no longer the manifest's file
    logs: list[str] = []
    with capture(logs):
        resumed = run_bench(_cfg(tmp_path / "art", **kw, resume=True))
    assert any("re-running the case" in s for s in logs)
    assert not any("from the interrupted run" in s for s in logs)  # shards of the old artifact dropped
    assert resumed["results"][0]["artifact"]["reused"] is False
    assert comparable(resumed) == comparable(first)


def test_the_run_loads_the_checkpoint_once_in_process(tmp_path, monkeypatch):
    """The reference pass reuses the model the run opened (exports load their own: export_model's API)."""
    import volo_deploy.models as models

    calls = []
    load = models.load_model

    def counting(*args, **kwargs):
        import inspect

        caller = Path(inspect.stack()[1].filename)
        if caller.parent.name == "harness":  # the harness's own loads (an export and a runner load their file)
            calls.append((caller.name, args))
        return load(*args, **kwargs)

    import volo_deploy.harness.evaljob as evaljob

    monkeypatch.setattr(models, "load_model", counting)
    monkeypatch.setattr(evaljob, "_MODELS", {})  # nothing kept from earlier tests
    monkeypatch.setenv("VOLO_DEPLOY_CACHE", str(tmp_path / "cache"))  # the reference is computed, not cached
    report = run_bench(_cfg(tmp_path / "art", backends=("torch",), limit=16))
    assert report["execution"]["reference_cache"]["reference_computed"] >= 1
    assert report["results"][0]["status"] == "ok" and report["reference"]["accuracy"]
    assert len(calls) == 1, calls
