"""INT8 for ``volo-export``: the calls a backend's ``export_impl`` makes for ``--int8``."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from volo_deploy.quant.options import Int8Options
from volo_deploy.quant.placement import Placement
from volo_deploy.quant.quantizer import QuantConfig, QuantResult, quantize_onnx


def default_cache_path(variant: str, img_size: int, profile: str, method: str) -> Path:
    """One calibration cache file per model/profile/method: a changed checkpoint or data set is
    then detected as a key mismatch (reported, recalibrated) rather than silently missed."""
    from volo_deploy.cache import cache_dir

    return cache_dir("calib", f"{variant}_{img_size}_{profile}_{method}.json")


def quantize_for_export(
    model, request, profile: str, fp32_proto=None, log=print
) -> tuple[Any, dict[str, Any]]:
    """FP32 portable ONNX of ``model`` -> Q/DQ ONNX per ``profile``, calibrated on
    ``request.calib_data`` (default: the demo manifest) and held to ``Int8Options.max_drop``.

    Returns (``onnx.ModelProto``, manifest details). ``request.quant`` carries the
    :class:`Int8Options` (defaults when ``None``).
    """
    import onnx

    from volo_deploy.quant.budget import quantize_within_budget
    from volo_deploy.quant.data import calibration_set, eval_set

    opts: Int8Options = getattr(request, "quant", None) or Int8Options()
    cfg = model.cfg
    if fp32_proto is None:
        from volo_deploy.backends.onnxruntime_backend import write_portable_onnx

        with tempfile.TemporaryDirectory(prefix="volo-fp32-") as tmp:
            path = Path(tmp) / "fp32.onnx"
            write_portable_onnx(model, request, path)
            fp32_proto = onnx.load(str(path))
    t0 = time.perf_counter()
    calib = calibration_set(cfg, request.calib_data, opts.calib_size, opts.seed, request.calib_layout)
    load_s = time.perf_counter() - t0
    log(f"calibration: {len(calib.x)} images from {calib.source} ({len(calib.skipped)} skipped), method {opts.method.value}")
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
        log(
            f"INT8 top-1 {report.int8_top1:.2f} vs FP32 {report.fp32_top1:.2f} on {report.eval_images} images "
            f"({report.runtime}): drop {report.drop:.2f} points (budget {opts.max_drop}), "
            f"agreement {report.agreement:.1f}%; returned to float: {', '.join(report.returned_to_float) or 'none'}"
        )
    log(f"INT8 weights: {result.weight_bits}-bit ({result.weight_bits_reason})")
    if result.cache.status == "mismatch":
        log(f"calibration cache {cache} did not match ({'; '.join(result.cache.differs)}): recalibrated")
    elif result.cache.status == "hit":
        log(f"calibration cache hit: {cache}")
    details["quantization"] = result.details()
    return result.proto, details


def openvino_int8_model(model, request, fp32_ov_model=None, log=print) -> tuple[Any, dict[str, Any]]:
    """INT8 ``openvino.Model`` for the OpenVINO backend's ``export_impl`` (save it with
    ``ov.save_model(m, path, compress_to_fp16=False)``) and its manifest details.

    ``Int8Options.openvino_path``: ``"qdq"`` converts the ``openvino``-profile Q/DQ ONNX
    (functions inlined); ``"nncf"`` runs ``nncf.quantize`` (TRANSFORMER) on the FP32 model and
    checks the same top-1 budget (no per-layer fallback on that path).
    """
    import onnx
    import openvino as ov

    from volo_deploy.errors import QuantizationError

    opts: Int8Options = getattr(request, "quant", None) or Int8Options()
    if opts.openvino_path == "qdq":
        qproto, details = quantize_for_export(model, request, "openvino", log=log)
        with tempfile.TemporaryDirectory(prefix="volo-ov-int8-") as tmp:
            path = Path(tmp) / "int8.onnx"
            onnx.save_model(qproto, str(path))
            ov_model = ov.convert_model(str(path))
        from volo_deploy.backends.onnxruntime_backend import onnx_metadata

        for key, value in onnx_metadata(model, request).items():  # same rt_info as the FP32 IR
            ov_model.set_rt_info(value, ["volo_deploy", key.replace(".", "_")])
        ov_model.set_rt_info(str(details["quantization"]["weight_bits"]), ["volo_deploy", "volo_quant_weight_bits"])
        return ov_model, {**details, "openvino_path": "qdq"}
    if opts.openvino_path != "nncf":
        raise QuantizationError(f"openvino_path must be 'qdq' or 'nncf', got {opts.openvino_path!r}")
    from volo_deploy.backends.onnxruntime_backend import write_portable_onnx
    from volo_deploy.quant.data import calibration_set, eval_set
    from volo_deploy.quant.evaluate import agreement, logits, top1
    from volo_deploy.quant.nncf_openvino import nncf_quantize_openvino, ov_logits

    with tempfile.TemporaryDirectory(prefix="volo-fp32-") as tmp:
        path = Path(tmp) / "fp32.onnx"
        write_portable_onnx(model, request, path)
        fp32 = onnx.load(str(path))
    from volo_deploy.quant.profiles import choose_weight_bits, get_profile

    calib = calibration_set(model.cfg, request.calib_data, opts.calib_size, opts.seed, request.calib_layout)
    bits, why = choose_weight_bits(get_profile("openvino"), opts.weight_bits)
    log(f"INT8 weights (NNCF overflow fix): {bits}-bit ({why})")
    t0 = time.perf_counter()
    ov_model = nncf_quantize_openvino(fp32, calib.x, subset_size=len(calib.x), ov_model=fp32_ov_model, weight_bits=bits)
    ov_model.set_rt_info(str(bits), ["volo_deploy", "volo_quant_weight_bits"])
    details: dict[str, Any] = {
        "openvino_path": "nncf",
        "calibration_data": calib.describe(),
        "quantization": {
            "method": "nncf (TRANSFORMER, mixed)",
            "calibration_seconds": round(time.perf_counter() - t0, 3),
            "weight_bits": bits,
            "weight_bits_reason": why,
        },
    }
    if opts.max_drop is not None:
        ev = eval_set(model.cfg, opts.eval_data, opts.eval_size)
        ref = logits(fp32, ev.x, "openvino", desc="eval fp32 (openvino)")
        got = ov_logits(ov_model, ev.x)
        drop = top1(ref, ev.labels) - top1(got, ev.labels)
        details["accuracy"] = {"fp32_top1": top1(ref, ev.labels), "int8_top1": top1(got, ev.labels), "drop": drop,
                               "agreement": agreement(ref, got), "eval_data": ev.describe()}
        if drop > opts.max_drop:
            raise QuantizationError(f"NNCF INT8 misses the budget: top-1 drop {drop:.2f} > {opts.max_drop} points")
    return ov_model, details
