"""INT8 for ``volo-export``: the Q/DQ call a backend's ``export_impl`` makes for ``--int8``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from volo_deploy.quant.options import Int8Options
from volo_deploy.quant.placement import Placement
from volo_deploy.quant.quantizer import QuantConfig, QuantResult, quantize_onnx

log = logging.getLogger(__name__)


def default_cache_path(variant: str, img_size: int, profile: str, method: str) -> Path:
    """One calibration cache file per model/profile/method: a changed checkpoint or data set is
    then detected as a key mismatch (reported, recalibrated) rather than silently missed."""
    from volo_deploy.cache import cache_dir

    return cache_dir("calib", f"{variant}_{img_size}_{profile}_{method}.json")


def quantize_for_export(model, request, profile: str, fp32_proto) -> tuple[Any, dict[str, Any]]:
    """The FP32 portable ONNX ``fp32_proto`` of ``model`` (the graph the backend exported) -> Q/DQ
    ONNX per ``profile``, calibrated on ``Int8Options.calib_data`` (default: the demo manifest) and held
    to the accuracy budget (labels: ``max_drop``; no labels: agreement on a held-out slice).

    Returns (``onnx.ModelProto``, manifest details). ``request.quant`` carries the
    :class:`Int8Options` (defaults when ``None``).
    """
    from volo_deploy.quant.data import describe_plan, load_int8_data, plan_int8_data

    opts: Int8Options = getattr(request, "quant", None) or Int8Options()
    cfg = model.cfg
    t0 = time.perf_counter()
    plan = plan_int8_data(opts, demo=cfg.family == "volo_demo")
    calib, budget_set = load_int8_data(cfg, plan, opts)
    load_s = time.perf_counter() - t0
    log.info(f"calibration: {len(calib.x)} images from {calib.source} ({len(calib.skipped)} skipped), method {opts.method.value}")
    config = QuantConfig(
        method=opts.method, placement=Placement(include=opts.include, exclude=opts.exclude), weight_bits=opts.weight_bits
    )
    cache = opts.cache or default_cache_path(cfg.name, cfg.img_size, profile, opts.method.value)
    details: dict[str, Any] = {"calibration_data": calib.describe(), "calibration_load_seconds": round(load_s, 3),
                               "int8_data": describe_plan(plan, calib, budget_set)}
    if budget_set is None:
        result: QuantResult = quantize_onnx(fp32_proto, calib.x, profile=profile, config=config, cache_path=cache)
    else:
        result, report = quantize_within_budget_of(fp32_proto, calib.x, budget_set, plan.budget, opts, profile, cache,
                                                   config)
        details["accuracy"] = {**report.as_dict(), "eval_data": budget_set.describe()}
        log.info(budget_line(report))
    log.info(f"INT8 weights: {result.weight_bits}-bit ({result.weight_bits_reason})")
    if result.cache.status == "mismatch":
        log.debug(f"calibration cache {cache} did not match ({'; '.join(result.cache.differs)}): recalibrated")
    elif result.cache.status == "hit":
        log.info(f"calibration cache hit: {cache}")
    details["quantization"] = result.details()
    return result.proto, details


def quantize_within_budget_of(fp32_proto, calib_x, budget_set, kind: str, opts: Int8Options, profile: str,
                              cache, config: QuantConfig):
    """:func:`quantize_within_budget` with the budget of ``kind`` ("labels" or "agreement") from ``opts``."""
    from volo_deploy.quant.budget import quantize_within_budget

    return quantize_within_budget(
        fp32_proto, calib_x, budget_set.x, budget_set.labels if kind == "labels" else None, profile=profile,
        config=config, max_drop=opts.max_drop if kind == "labels" else None,
        min_agreement=opts.agreement_floor(kind), min_cosine=opts.min_cosine, runtime=opts.runtime, cache_path=cache,
    )


def budget_line(report) -> str:
    """One line saying how the INT8 model met its budget."""
    where = f"{report.eval_images} {'labeled' if report.kind == 'labels' else 'held-out'} images ({report.runtime})"
    if report.kind == "labels":
        head = (f"INT8 top-1 {report.int8_top1:.2f} vs FP32 {report.fp32_top1:.2f} on {where}: drop "
                f"{report.drop:.2f} points (budget {report.max_drop}), ")
    else:
        head = (f"INT8 vs FP32 on {where}, no labels: budget min agreement {report.min_agreement}%, ")
    return (f"{head}agreement {report.agreement:.1f}%, logit cosine {report.cosine_mean:.4f}; "
            f"returned to float: {', '.join(report.returned_to_float) or 'none'}")
