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
    ONNX per ``profile``, calibrated on ``request.calib_data`` (default: the demo manifest) and held
    to ``Int8Options.max_drop``.

    Returns (``onnx.ModelProto``, manifest details). ``request.quant`` carries the
    :class:`Int8Options` (defaults when ``None``).
    """
    from volo_deploy.quant.budget import quantize_within_budget
    from volo_deploy.quant.data import calibration_set, eval_set

    opts: Int8Options = getattr(request, "quant", None) or Int8Options()
    cfg = model.cfg
    t0 = time.perf_counter()
    calib = calibration_set(cfg, request.calib_data, opts.calib_size, opts.seed, request.calib_layout)
    load_s = time.perf_counter() - t0
    log.info(f"calibration: {len(calib.x)} images from {calib.source} ({len(calib.skipped)} skipped), method {opts.method.value}")
    config = QuantConfig(
        method=opts.method, placement=Placement(include=opts.include, exclude=opts.exclude), weight_bits=opts.weight_bits
    )
    cache = opts.cache or default_cache_path(cfg.name, cfg.img_size, profile, opts.method.value)
    details: dict[str, Any] = {"calibration_data": calib.describe(), "calibration_load_seconds": round(load_s, 3)}
    if opts.max_drop is None:
        result: QuantResult = quantize_onnx(fp32_proto, calib.x, profile=profile, config=config, cache_path=cache)
    else:
        ev = eval_set(cfg, opts.eval_data, opts.eval_size)
        result, report = quantize_within_budget(
            fp32_proto,
            calib.x,
            ev.x,
            ev.labels,
            profile=profile,
            config=config,
            max_drop=opts.max_drop,
            min_agreement=opts.min_agreement,
            runtime=opts.runtime,
            cache_path=cache,
        )
        details["accuracy"] = {**report.as_dict(), "eval_data": ev.describe()}
        log.info(
            f"INT8 top-1 {report.int8_top1:.2f} vs FP32 {report.fp32_top1:.2f} on {report.eval_images} images "
            f"({report.runtime}): drop {report.drop:.2f} points (budget {opts.max_drop}), "
            f"agreement {report.agreement:.1f}%; returned to float: {', '.join(report.returned_to_float) or 'none'}"
        )
    log.info(f"INT8 weights: {result.weight_bits}-bit ({result.weight_bits_reason})")
    if result.cache.status == "mismatch":
        log.debug(f"calibration cache {cache} did not match ({'; '.join(result.cache.differs)}): recalibrated")
    elif result.cache.status == "hit":
        log.info(f"calibration cache hit: {cache}")
    details["quantization"] = result.details()
    return result.proto, details
