"""Statistics the harness reports: latency percentiles, accuracy, agreement with FP32.

Runners record raw per-call wall times (seconds); everything derived from them lives here,
including the latency comparison ``volo-gate`` decides on (:func:`latency_ratio`).
Agreement and logit error reuse :func:`volo_deploy.export.validate.compare_logits`, so the
numbers in a bench report mean exactly what export validation means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from volo_deploy.export.validate import compare_logits

#: Coefficient of variation above which a latency measurement is flagged as too noisy.
NOISY_CV = 0.15
#: Fewer timed iterations than this cannot give a meaningful p99.
MIN_ITERS_FOR_P99 = 20


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one batch size, in milliseconds (``throughput_ips``: images per second)."""

    batch: int
    warmup: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    cv: float
    throughput_ips: float
    noisy: bool
    warning: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def latency_stats(times_s: list[float] | np.ndarray, batch: int, warmup: int, noisy_cv: float = NOISY_CV) -> LatencyStats:
    """Percentiles (linear interpolation), mean, CV and throughput of timed calls (seconds).

    ``noisy`` is set when the CV exceeds ``noisy_cv`` or when there are too few calls for
    a p99; ``warning`` then says why, in words a CI log reader understands.
    """
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("latency_stats needs at least one timed call")
    mean = float(t.mean())
    std = float(t.std(ddof=1)) if t.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(t, [50, 90, 99]))
    warnings = []
    if cv > noisy_cv:
        warnings.append(f"too noisy to trust: CV {cv:.0%} > {noisy_cv:.0%} (busy machine? pin --threads, raise --iters)")
    if t.size < MIN_ITERS_FOR_P99:
        warnings.append(f"only {t.size} timed calls: p99 is not meaningful (use --iters >= {MIN_ITERS_FOR_P99})")
    return LatencyStats(
        batch=int(batch),
        warmup=int(warmup),
        iters=int(t.size),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=mean,
        std_ms=std,
        min_ms=float(t.min()),
        max_ms=float(t.max()),
        cv=cv,
        throughput_ips=batch * 1e3 / mean if mean > 0 else 0.0,
        noisy=bool(warnings),
        warning="; ".join(warnings) or None,
    )


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent, ``{"top1_pct": .., "top5_pct": ..}``; a k above the class count is left out."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    out: dict[str, float] = {}
    if len(labels) == 0:
        return out
    order = np.argsort(-logits, axis=1, kind="stable")
    for k in ks:
        if k > logits.shape[1]:
            continue
        hit = (order[:, :k] == labels[:, None]).any(axis=1)
        out[f"top{k}_pct"] = float(hit.mean() * 100.0)
    return out


def agreement_stats(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Agreement of ``out`` with FP32 reference logits: top-1 agreement (percent) and logit error.

    Keys: ``n``, ``top1_agreement_pct``, ``max_abs``, ``mean_abs``, ``max_rel``,
    ``cosine_min``, ``cosine_mean`` (from :func:`compare_logits`).
    """
    s = compare_logits(ref, out).as_dict()
    agree = s.pop("top1_agreement")
    return {"n": int(s.pop("n")), "top1_agreement_pct": float(agree) * 100.0, **{k: float(v) for k, v in s.items()}}


@dataclass(frozen=True)
class RatioEstimate:
    """``current / baseline`` median latency with a one-sided bootstrap interval ``[low, high]``.

    ``low`` and ``high`` are each a one-sided ``conf`` bound (``None``: no samples on one side,
    the ratio of the two p50s alone).
    """

    ratio: float
    low: float | None
    high: float | None
    conf: float
    n_baseline: int
    n_current: int


def block_length(n: int) -> int:
    """Block length of the block bootstrap: ~n^(1/3), the usual rate for a median's block bootstrap."""
    return max(1, round(n ** (1.0 / 3.0)))


def bootstrap_medians(samples: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` circular-block bootstrap resamples of ``samples`` (in call order).

    Blocks, not single calls, are resampled: on a shared machine slow calls come in runs (another
    process holds the cores for a while), and an i.i.d. bootstrap would call such a series precise.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    b = block_length(n)
    starts = rng.integers(0, n, size=(n_boot, math.ceil(n / b)))
    idx = ((starts[:, :, None] + np.arange(b)) % n).reshape(n_boot, -1)[:, :n]
    return np.median(x[idx], axis=1)


def latency_ratio(
    baseline_ms, current_ms, conf: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> RatioEstimate:
    """Ratio of median latencies (current / baseline) with one-sided ``conf`` bootstrap bounds.

    Both arguments are per-call samples in ms (call order matters, see :func:`bootstrap_medians`).
    Deterministic for a given ``seed``.
    """
    b = np.asarray(baseline_ms, dtype=np.float64)
    c = np.asarray(current_ms, dtype=np.float64)
    if b.size == 0 or c.size == 0:
        raise ValueError("latency_ratio needs samples on both sides")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(c, n_boot, rng) / bootstrap_medians(b, n_boot, rng)
    low, high = (float(v) for v in np.quantile(ratios, [1.0 - conf, conf]))
    return RatioEstimate(float(np.median(c) / np.median(b)), low, high, conf, int(b.size), int(c.size))


def paired_ratio(
    baseline_ms, current_ms, conf: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> RatioEstimate:
    """Median of the per-pair ratios ``current[i] / baseline[i]`` of calls timed next to each other
    (interleaved re-timing), with one-sided ``conf`` block-bootstrap bounds over the pairs.

    A busy period of the machine slows both calls of a pair, so it cancels in their ratio.
    """
    b = np.asarray(baseline_ms, dtype=np.float64)
    c = np.asarray(current_ms, dtype=np.float64)
    if b.size == 0 or b.size != c.size:
        raise ValueError("paired_ratio needs the same number (> 0) of calls on both sides")
    r = c / np.maximum(b, 1e-12)
    boots = bootstrap_medians(r, n_boot, np.random.default_rng(seed))
    low, high = (float(v) for v in np.quantile(boots, [1.0 - conf, conf]))
    return RatioEstimate(float(np.median(r)), low, high, conf, int(b.size), int(c.size))
