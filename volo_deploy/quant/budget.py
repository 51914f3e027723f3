"""Accuracy budget: quantize, measure the top-1 drop (labeled images) or the top-1 agreement with
FP32 and the logit cosine (unlabeled held-out images), return the worst layers to float.

Layers are ranked once by their isolated SQNR (:mod:`volo_deploy.quant.sensitivity`) on
the fully quantized model; while the drop exceeds the budget, the ``group_size`` lowest-SQNR
layers still quantized go back to float and the model is re-quantized from the cached
ranges (no recalibration) and re-measured.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import QuantizationError
from volo_deploy.quant.evaluate import agreement, cosine, logits, top1
from volo_deploy.quant.quantizer import QuantConfig, QuantResult, quantize_onnx

log = logging.getLogger(__name__)


@dataclass
class BudgetReport:
    runtime: str
    eval_images: int
    max_drop: float | None
    min_agreement: float | None
    fp32_top1: float | None  # None: no labels (agreement budget)
    int8_top1: float | None
    drop: float | None  # top-1 points
    agreement: float  # top-1 agreement with FP32, percent
    cosine_mean: float = 1.0  # INT8 vs FP32 logits, mean over images
    cosine_min: float = 1.0
    kind: str = "labels"  # "labels": top-1 drop on labeled images; "agreement": with FP32 (no labels)
    min_cosine: float | None = None
    returned_to_float: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    sqnr_db: dict[str, float] = field(default_factory=dict)
    eval_seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sqnr_db"] = {k: round(v, 2) for k, v in sorted(self.sqnr_db.items(), key=lambda kv: kv[1])[:10]}
        return d


@dataclass(frozen=True)
class BudgetConfig:
    """How :func:`quantize_within_budget` quantizes and what it must keep.

    ``max_drop``: top-1 points the INT8 model may lose on the eval images (labels given; None: not
    checked), measured on ``runtime`` (default the profile's); ``min_agreement``: percent of images whose
    top-1 must equal FP32's; ``min_cosine``: mean logit cosine vs FP32 (None: not checked). Each step returns ``group_size`` layers to float, at most ``max_steps``
    steps; ``sqnr_images`` eval images rank the layers. ``cache_path``/``data_key``: the calibration cache.
    """

    profile: str = "onnxruntime"
    config: QuantConfig | None = None
    max_drop: float | None = 0.5
    min_agreement: float | None = None
    min_cosine: float | None = None
    runtime: str | None = None
    cache_path: str | Path | None = None
    data_key: str | None = None
    group_size: int = 1
    max_steps: int | None = None
    sqnr_images: int = 16


@dataclass
class _Search:
    """The state of one budget search: fixed inputs, the FP32 reference and the report so far."""

    fp32_proto: object
    calib_x: np.ndarray | None
    eval_x: np.ndarray
    eval_labels: np.ndarray | None
    budget: BudgetConfig
    prof: object
    runtime: str
    cache: Path
    ref: np.ndarray
    fp32_acc: float | None
    eval_s: float
    report: BudgetReport | None = None

    def quantize(self, config: QuantConfig) -> QuantResult:
        return quantize_onnx(self.fp32_proto, self.calib_x, profile=self.prof, config=config, cache_path=self.cache,
                             data_key=self.budget.data_key)

    def score(self, result: QuantResult, returned: list[str]) -> None:
        """Measure ``result``, update (or start) the report and record the step."""
        t0 = time.perf_counter()
        got = logits(result.proto, self.eval_x, self.runtime, desc=f"eval int8 ({self.runtime})")
        labeled = self.eval_labels is not None
        acc = top1(got, self.eval_labels) if labeled else None
        drop = self.fp32_acc - acc if labeled else None
        agree, (cos_mean, cos_min) = agreement(self.ref, got), cosine(self.ref, got)
        self.eval_s += time.perf_counter() - t0
        b = self.budget
        if self.report is None:
            self.report = BudgetReport(self.runtime, len(self.eval_x), b.max_drop if labeled else None,
                                       b.min_agreement, self.fp32_acc, acc, drop, agree,
                                       kind="labels" if labeled else "agreement", min_cosine=b.min_cosine)
        r = self.report
        r.int8_top1, r.drop, r.agreement, r.cosine_mean, r.cosine_min = acc, drop, agree, cos_mean, cos_min
        r.steps.append({"float": returned, "int8_top1": acc, "drop": None if drop is None else round(drop, 3),
                        "agreement": agree, "cosine_mean": round(cos_mean, 6)})

    def met(self) -> bool:
        r, b = self.report, self.budget
        return ((r.drop is None or b.max_drop is None or r.drop <= b.max_drop)
                and (b.min_agreement is None or r.agreement >= b.min_agreement)
                and (b.min_cosine is None or r.cosine_mean >= b.min_cosine))

    def describe(self) -> str:
        r, b = self.report, self.budget
        drop = f"top-1 drop {r.drop:.2f} points (max {b.max_drop}), " if r.drop is not None else ""
        cos = f", logit cosine {r.cosine_mean:.4f} (min {b.min_cosine})" if b.min_cosine is not None else ""
        return f"{drop}agreement {r.agreement:.2f}% (min {b.min_agreement}){cos}"

    def missed(self, keep: list[str]) -> QuantizationError:
        knob = "--max-drop" if self.report.drop is not None else "--min-agreement"
        return QuantizationError(
            f"INT8 misses the accuracy budget: {self.describe()} on "
            f"{len(self.eval_x)} images ({self.runtime}) with {len(keep)} layer(s) returned to float "
            f"({', '.join(keep) or 'none'}); relax {knob}, try another --calib-method, or use FP16/FP32"
        )


def _return_to_float(search: _Search, first: QuantResult, config: QuantConfig) -> QuantResult:
    """Return the lowest-SQNR layers to float, ``group_size`` at a time, until the budget is met."""
    from volo_deploy.quant.sensitivity import layer_sqnr

    b, report = search.budget, search.report
    report.sqnr_db = layer_sqnr(search.fp32_proto, first.proto, first.quantized, search.eval_x[: b.sqnr_images])
    ranking = sorted(report.sqnr_db, key=report.sqnr_db.get)
    keep = list(config.keep_float)
    steps = 0
    result = first
    while not search.met():
        todo = [name for name in ranking if name not in keep]
        if not todo or (b.max_steps is not None and steps >= b.max_steps):
            raise search.missed(keep)
        group = todo[: b.group_size]
        keep += group
        steps += 1
        try:
            result = search.quantize(dataclasses.replace(config, keep_float=tuple(keep)))
        except QuantizationError as exc:  # nothing left to quantize
            raise QuantizationError(f"INT8 misses the accuracy budget ({exc})") from None
        search.score(result, group)
        log.info("returned %s to float: %s", ", ".join(group), search.describe())
    report.returned_to_float = keep
    result.calibration_seconds = first.calibration_seconds
    result.cache = first.cache
    return result


def quantize_within_budget(
    fp32_proto,
    calib_x: np.ndarray | None,
    eval_x: np.ndarray,
    eval_labels: np.ndarray | None,
    budget: BudgetConfig | None = None,
    **overrides,
) -> tuple[QuantResult, BudgetReport]:
    """Quantize ``fp32_proto`` so that top-1 on ``eval_x`` drops by at most ``budget.max_drop`` points
    (``eval_labels`` given; None: no labels, agreement and cosine only) and agrees with FP32 on at least
    ``budget.min_agreement`` percent (see :class:`BudgetConfig`;
    ``overrides`` are its fields, e.g. ``max_drop=0.5``). Raises :class:`QuantizationError` when even
    returning every quantized layer (or ``max_steps`` groups) to float misses the budget."""
    from volo_deploy.quant.profiles import get_profile

    b = dataclasses.replace(budget or BudgetConfig(), **overrides)
    prof = get_profile(b.profile)
    runtime = b.runtime or prof.runtime
    config = b.config or QuantConfig()
    start = time.perf_counter()
    ref = logits(fp32_proto, eval_x, runtime, desc=f"eval fp32 ({runtime})")
    fp32_acc = top1(ref, eval_labels) if eval_labels is not None else None
    with tempfile.TemporaryDirectory(prefix="volo-budget-") as tmp:
        cache = Path(b.cache_path) if b.cache_path else Path(tmp) / "ranges.json"  # re-quantize without recalibrating
        search = _Search(fp32_proto, calib_x, eval_x, eval_labels, b, prof, runtime, cache, ref, fp32_acc,
                         time.perf_counter() - start)
        result = search.quantize(config)
        search.score(result, list(config.keep_float))
        log.info("int8 %s: %s", runtime, search.describe())
        if not search.met():
            result = _return_to_float(search, result, config)
    search.report.eval_seconds = search.eval_s
    return result, search.report
