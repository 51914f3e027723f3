"""Harness statistics on constructed cases: agreement, logit error, top-k, latency."""

from __future__ import annotations

import numpy as np
import pytest

from volo_deploy.harness.stats import agreement_stats, latency_stats, topk_accuracy


def _logits(n: int = 4, c: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c)).astype(np.float32)


def test_identical_logits_agree_fully():
    ref = _logits()
    s = agreement_stats(ref, ref.copy())
    assert s["n"] == 4
    assert s["top1_agreement_pct"] == 100.0
    assert s["max_abs"] == 0.0 and s["mean_abs"] == 0.0 and s["max_rel"] == 0.0
    assert s["cosine_min"] == pytest.approx(1.0, abs=1e-12)


def test_one_flipped_top1_of_four_is_75_percent():
    ref = np.array([[3.0, 1, 0], [0, 3, 1], [1, 0, 3], [3, 2, 0]])
    out = ref.copy()
    out[3] = [2.0, 3, 0]  # top-1 moves from class 0 to class 1 on the last image only
    s = agreement_stats(ref, out)
    assert s["top1_agreement_pct"] == pytest.approx(75.0)
    assert s["max_abs"] == pytest.approx(1.0)
    assert s["mean_abs"] == pytest.approx(2.0 / 12)


def test_known_error_is_reported_exactly():
    ref = _logits(n=2, c=5)
    out = ref.astype(np.float64).copy()
    out[1, 2] += 0.25
    s = agreement_stats(ref, out)
    assert s["max_abs"] == pytest.approx(0.25, rel=1e-6)
    assert s["mean_abs"] == pytest.approx(0.25 / 10, rel=1e-6)
    assert s["max_rel"] == pytest.approx(0.25 / np.abs(ref).max(), rel=1e-5)
    assert s["cosine_min"] < 1.0
    scaled = agreement_stats(ref, 2 * ref)  # same direction: cosine 1, top-1 unchanged, error = |ref|
    assert scaled["cosine_min"] == pytest.approx(1.0) and scaled["top1_agreement_pct"] == 100.0
    assert scaled["max_abs"] == pytest.approx(float(np.abs(ref).max()), rel=1e-6)


def test_topk_accuracy():
    logits = np.array([[0.9, 0.1, 0.0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 1, 0, 0, 0, 0]])
    labels = np.array([0, 1, 2])
    acc = topk_accuracy(logits, labels)
    assert acc["top1_pct"] == pytest.approx(100 / 3)
    assert acc["top5_pct"] == pytest.approx(100.0)  # class 1 is 5th of 6 on the second image
    assert "top5_pct" not in topk_accuracy(logits[:, :3], labels)  # fewer than 5 classes


def test_latency_percentiles_and_noise_flag():
    times = np.arange(1, 101) / 1e3  # 1..100 ms
    st = latency_stats(times, batch=4, warmup=2)
    assert st.iters == 100 and st.batch == 4 and st.warmup == 2
    assert st.p50_ms == pytest.approx(50.5)
    assert st.p90_ms == pytest.approx(90.1)
    assert st.p99_ms == pytest.approx(99.01)
    assert st.mean_ms == pytest.approx(50.5)
    assert st.throughput_ips == pytest.approx(4 / 0.0505)
    assert st.noisy and "too noisy" in st.warning
    steady = latency_stats([0.01] * 30, batch=1, warmup=0)
    assert steady.cv == 0.0 and not steady.noisy and steady.warning is None
    few = latency_stats([0.01] * 5, batch=1, warmup=0)
    assert few.noisy and "p99" in few.warning


def test_latency_ratio_bounds_a_real_slowdown_and_contain_no_change():
    from volo_deploy.harness.stats import latency_ratio

    base = np.random.default_rng(0).gamma(20.0, 0.5, size=60)  # ~10 ms, CV ~22%
    same = latency_ratio(base, np.random.default_rng(1).permutation(base))
    assert same.ratio == pytest.approx(1.0)
    assert same.low < 1.0 < same.high
    slow = latency_ratio(base, base * 1.3)
    assert slow.ratio == pytest.approx(1.3)
    assert 1.1 < slow.low <= 1.3 <= slow.high
    assert latency_ratio(base, base * 1.3) == slow  # deterministic (fixed seed)
    assert (slow.n_baseline, slow.n_current, slow.conf) == (60, 60, 0.95)
    wider = latency_ratio(base, base * 1.3, conf=0.99)
    assert wider.low <= slow.low and wider.high >= slow.high
    with pytest.raises(ValueError):
        latency_ratio([], base)


def test_block_bootstrap_keeps_slow_runs_together():
    from volo_deploy.harness.stats import block_length, bootstrap_medians

    assert [block_length(n) for n in (1, 8, 30, 100)] == [1, 2, 3, 5]
    x = np.arange(30, dtype=float)
    meds = bootstrap_medians(x, 500, np.random.default_rng(0))
    assert meds.shape == (500,) and meds.min() >= 0 and meds.max() <= 29
    assert len(np.unique(meds)) > 10
