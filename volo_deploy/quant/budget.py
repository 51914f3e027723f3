"""Accuracy budget: quantize, measure the top-1 drop, return the worst layers to float.

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
from volo_deploy.quant.evaluate import agreement, logits, top1
from volo_deploy.quant.quantizer import QuantConfig, QuantResult, quantize_onnx

log = logging.getLogger(__name__)


@dataclass
class BudgetReport:
    runtime: str
    eval_images: int
    max_drop: float
    min_agreement: float | None
    fp32_top1: float
    int8_top1: float
    drop: float  # top-1 points
    agreement: float  # top-1 agreement with FP32, percent
    returned_to_float: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    sqnr_db: dict[str, float] = field(default_factory=dict)
    eval_seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sqnr_db"] = {k: round(v, 2) for k, v in sorted(self.sqnr_db.items(), key=lambda kv: kv[1])[:10]}
        return d


def _score(proto, x, labels, runtime, ref_logits) -> tuple[float, float]:
    got = logits(proto, x, runtime, desc=f"eval int8 ({runtime})")
    return top1(got, labels), agreement(ref_logits, got)


def quantize_within_budget(
    fp32_proto,
    calib_x: np.ndarray | None,
    eval_x: np.ndarray,
    eval_labels: np.ndarray,
    *,
    profile: str = "onnxruntime",
    config: QuantConfig | None = None,
    max_drop: float = 0.5,
    min_agreement: float | None = None,
    runtime: str | None = None,
    cache_path: str | Path | None = None,
    data_key: str | None = None,
    group_size: int = 1,
    max_steps: int | None = None,
    sqnr_images: int = 16,
) -> tuple[QuantResult, BudgetReport]:
    """Quantize ``fp32_proto`` so that top-1 on ``eval_x`` drops by at most ``max_drop`` points
    (measured on ``runtime``, default the profile's) and, if ``min_agreement`` (percent) is
    given, top-1 agrees with FP32 on at least that share of the images. Raises :class:`QuantizationError` when even
    returning every quantized layer (or ``max_steps`` groups) to float misses the budget."""
    from volo_deploy.quant.profiles import get_profile
    from volo_deploy.quant.sensitivity import layer_sqnr

    prof = get_profile(profile)
    runtime = runtime or prof.runtime
    config = config or QuantConfig()
    start = time.perf_counter()
    ref = logits(fp32_proto, eval_x, runtime, desc=f"eval fp32 ({runtime})")
    fp32_acc = top1(ref, eval_labels)
    eval_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="volo-budget-") as tmp:
        cache = Path(cache_path) if cache_path else Path(tmp) / "ranges.json"  # re-quantize without recalibrating
        result = quantize_onnx(fp32_proto, calib_x, profile=prof, config=config, cache_path=cache, data_key=data_key)
        first = result
        t0 = time.perf_counter()
        acc, agree = _score(result.proto, eval_x, eval_labels, runtime, ref)
        eval_s += time.perf_counter() - t0
        report = BudgetReport(runtime, len(eval_x), max_drop, min_agreement, fp32_acc, acc, fp32_acc - acc, agree)
        report.steps.append(
            {"float": list(config.keep_float), "int8_top1": acc, "drop": round(fp32_acc - acc, 3), "agreement": agree}
        )

        def met() -> bool:
            return report.drop <= max_drop and (min_agreement is None or report.agreement >= min_agreement)

        log.info("int8 %s: top-1 %.2f vs fp32 %.2f (drop %.2f)", runtime, acc, fp32_acc, fp32_acc - acc)
        if met():
            report.eval_seconds = eval_s
            return result, report
        report.sqnr_db = layer_sqnr(fp32_proto, result.proto, result.quantized, eval_x[:sqnr_images])
        ranking = sorted(report.sqnr_db, key=report.sqnr_db.get)
        keep = list(config.keep_float)
        steps = 0
        while not met():
            todo = [name for name in ranking if name not in keep]
            if not todo or (max_steps is not None and steps >= max_steps):
                raise QuantizationError(
                    f"INT8 misses the accuracy budget: top-1 drop {report.drop:.2f} points (max {max_drop}), "
                    f"agreement {report.agreement:.2f}% (min {min_agreement}) on "
                    f"{len(eval_x)} images ({runtime}) with {len(keep)} layer(s) returned to float "
                    f"({', '.join(keep) or 'none'}); raise --max-drop, try another --calib-method, or use FP16/FP32"
                )
            group = todo[:group_size]
            keep += group
            steps += 1
            cfg = dataclasses.replace(config, keep_float=tuple(keep))
            try:
                result = quantize_onnx(fp32_proto, calib_x, profile=prof, config=cfg, cache_path=cache, data_key=data_key)
            except QuantizationError as exc:  # nothing left to quantize
                raise QuantizationError(f"INT8 misses the accuracy budget ({exc})") from None
            t0 = time.perf_counter()
            acc, agree = _score(result.proto, eval_x, eval_labels, runtime, ref)
            eval_s += time.perf_counter() - t0
            report.int8_top1, report.drop, report.agreement = acc, fp32_acc - acc, agree
            report.steps.append({"float": group, "int8_top1": acc, "drop": round(fp32_acc - acc, 3), "agreement": agree})
            log.info("returned %s to float: top-1 %.2f (drop %.2f)", ", ".join(group), acc, report.drop)
        report.returned_to_float = keep
        result.calibration_seconds = first.calibration_seconds
        result.cache = first.cache
    report.eval_seconds = eval_s
    return result, report
