"""Running statistics of a streamed evaluation: what the report needs, batch by batch.

:class:`AgreementAccumulator` gives the figures of :func:`volo_deploy.harness.stats.agreement_stats`
(from :func:`volo_deploy.export.validate.compare_logits`) without holding the logits: ``n``,
``top1_agreement_pct``, ``max_abs``, ``max_rel`` and ``cosine_min`` are bit-identical to the
in-memory figures (counts, maxima and minima do not depend on the order); ``mean_abs`` and
``cosine_mean`` are sums in another order, equal to ~1e-15 relative. Accuracy keeps only the
top-k class indices and the label of each image (:func:`topk_indices`, :func:`accuracy_from_topk`,
the same stable sort as :func:`volo_deploy.harness.stats.topk_accuracy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOPK = 5


@dataclass
class AgreementAccumulator:
    """Agreement with the FP32 reference, accumulated over batches (and merged over shards)."""

    n: int = 0
    agree: int = 0
    n_values: int = 0
    sum_abs: float = 0.0
    max_abs: float = 0.0
    ref_abs_max: float = 0.0
    sum_cos: float = 0.0
    min_cos: float = float("inf")

    def update(self, ref: np.ndarray, out: np.ndarray) -> None:
        """Add a batch: ``ref`` and ``out`` are (B, classes) logits of the same images."""
        ref = np.asarray(ref, dtype=np.float64)
        out = np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
        if ref.size == 0:
            return
        diff = np.abs(out - ref)
        denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
        cos = np.where(denom > 0, (ref * out).sum(axis=1) / np.maximum(denom, 1e-300), 1.0)
        self.n += int(ref.shape[0])
        self.agree += int((ref.argmax(1) == out.argmax(1)).sum())
        self.n_values += int(diff.size)
        self.sum_abs += float(diff.sum())
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.ref_abs_max = max(self.ref_abs_max, float(np.abs(ref).max()))
        self.sum_cos += float(cos.sum())
        self.min_cos = min(self.min_cos, float(cos.min()))

    def merge(self, other: "AgreementAccumulator") -> "AgreementAccumulator":
        """Fold ``other`` (a later shard) into this one; returns self."""
        self.n += other.n
        self.agree += other.agree
        self.n_values += other.n_values
        self.sum_abs += other.sum_abs
        self.max_abs = max(self.max_abs, other.max_abs)
        self.ref_abs_max = max(self.ref_abs_max, other.ref_abs_max)
        self.sum_cos += other.sum_cos
        self.min_cos = min(self.min_cos, other.min_cos)
        return self

    def result(self) -> dict[str, float]:
        """The keys and meanings of :func:`volo_deploy.harness.stats.agreement_stats`."""
        n = self.n
        return {
            "n": int(n),
            "top1_agreement_pct": float(self.agree / n if n else 1.0) * 100.0,
            "max_abs": self.max_abs,
            "mean_abs": self.sum_abs / self.n_values if self.n_values else 0.0,
            "max_rel": self.max_abs / self.ref_abs_max if self.ref_abs_max > 0 else 0.0,
            "cosine_min": self.min_cos if n else 1.0,
            "cosine_mean": self.sum_cos / n if n else 1.0,
        }

    def state(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "AgreementAccumulator":
        return cls(**{k: type(getattr(cls, k))(v) for k, v in state.items()})


def topk_indices(logits: np.ndarray, k: int = TOPK) -> np.ndarray:
    """(N, min(k, classes)) int32 class indices, best first, ties to the lower index (a stable sort)."""
    order = np.argsort(-np.asarray(logits), axis=1, kind="stable")
    return np.ascontiguousarray(order[:, :k], dtype=np.int32)


def accuracy_from_topk(top: np.ndarray, labels: np.ndarray, num_classes: int, ks: tuple[int, ...] = (1, 5)) -> dict:
    """Top-k accuracy in percent from :func:`topk_indices` rows; a k above the class count is left out."""
    labels = np.asarray(labels).reshape(-1)
    out: dict[str, float] = {}
    if len(labels) == 0:
        return out
    for k in ks:
        if k > num_classes or k > top.shape[1]:
            continue
        hit = (top[:, :k] == labels[:, None]).any(axis=1)
        out[f"top{k}_pct"] = float(hit.mean() * 100.0)
    return out
