"""``volo-export``: export a VOLO checkpoint for one backend and validate it.

With no arguments it exports the bundled demo model to ONNX (``./volo_export``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from volo_deploy.backends import backend_help
from volo_deploy.cli.common import EXIT_CODES_HELP, add_layout_argument, check_layout_use, positive_int, run_cli
from volo_deploy.cli.options import add_option_flags, options_from_args


def build_parser(backend_cls=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="volo-export", description=__doc__.splitlines()[0], epilog=EXIT_CODES_HELP)
    p.add_argument("--backend", default="onnx", help=f"{backend_help()} (default: onnx)")
    p.add_argument("--model", default=None, help="e.g. volo_d1_224 (default: detected from the checkpoint)")
    p.add_argument("--checkpoint", type=Path, default=None, help=".pth/.pth.tar/.safetensors (default: the bundled demo)")
    p.add_argument("--img-size", type=positive_int, default=None, help="input size, if not the checkpoint's")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=positive_int, default=1, help="fixed batch size (default 1)")
    g.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17, default 18)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="FP16 weights/compute where the backend supports it (OpenVINO: FP16 weights, FP32 math)")
    prec.add_argument("--bf16", action="store_true", help="bf16 math (OpenVINO; CPUs with avx512_bf16/AMX or ARM bf16 only)")
    prec.add_argument("--int8", action="store_true", help="INT8 post-training quantization (Q/DQ; --calib-data, default the demo manifest for the demo model)")
    p.add_argument("--calib-data", type=Path, default=None, help="calibration images (folder, list file or manifest)")
    add_layout_argument(p, "--calib-layout", "--calib-data")
    q = p.add_argument_group("INT8 (--int8)")
    q.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"), default="minmax", help="range estimation (default minmax)")
    q.add_argument("--calib-size", type=positive_int, default=None, help="calibration images drawn (stratified) from --calib-data (default 300-1000 by class count)")
    q.add_argument("--max-drop", type=float, default=0.5, help="top-1 points allowed below FP32 on --eval-data; layers return to float until met (default 0.5; negative: no check)")
    q.add_argument("--min-agreement", type=float, default=None, help="also require this %% of --eval-data images to keep FP32's top-1 (e.g. 99)")
    q.add_argument("--eval-data", type=Path, default=None, help="held-out labeled images for --max-drop (default: the demo's digits val split)")
    q.add_argument("--calib-cache", type=Path, default=None, help="calibration-range cache file (default: one per model/profile/method in the cache dir)")
    q.add_argument("--int8-weight-bits", choices=("auto", "7", "8"), default="auto", help="CPU INT8 weights: 7 bits where the CPU has no VNNI/dot product (int16 saturation), else 8 (default auto: by this CPU)")
    q.add_argument("--keep-float", action="append", default=[], metavar="PATTERN", help="layer-name pattern kept in float (repeatable), e.g. 'network.0.*'")
    q.add_argument("--quantize", action="append", default=[], metavar="PATTERN", help="layer-name pattern quantized even if float by default (e.g. 'head')")
    p.add_argument("--val-data", type=Path, default=None, help="images to validate on (default: demo digits or synthetic)")
    p.add_argument("--atol", type=float, default=None, help="max abs logit error allowed in validation")
    p.add_argument("--output", type=Path, default=Path("volo_export"), help="output folder (default ./volo_export)")
    p.add_argument("--force", action="store_true", help="replace existing files in the output folder")
    if backend_cls is not None:
        add_option_flags(p.add_argument_group(f"{backend_cls.name} options"), backend_cls.Options)
    return p


def _main(argv: list[str] | None) -> int:
    from volo_deploy.backends import ExportRequest, get_backend
    from volo_deploy.backends.precision import precision_from_flags

    argv = sys.argv[1:] if argv is None else argv
    pre, _ = build_parser().parse_known_args(argv)
    backend_cls = get_backend(pre.backend)
    args = build_parser(backend_cls).parse_args(argv)
    precision = precision_from_flags(fp16=args.fp16, bf16=args.bf16, int8=args.int8)
    check_layout_use("--calib-layout", args.calib_layout, "--calib-data", args.calib_data)

    from dataclasses import replace

    from volo_deploy.jobs.export import export_model
    from volo_deploy.export.validate import DEFAULT_TOLERANCES

    tol = DEFAULT_TOLERANCES[precision]
    if args.atol is not None:
        tol = replace(tol, max_abs=args.atol, max_rel=None)
    request = ExportRequest(
        output_dir=args.output,
        precision=precision,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        force=args.force,
        calib_data=args.calib_data,
        calib_layout=args.calib_layout,
        options=options_from_args(backend_cls.Options, args),
        quant=_int8_options(args) if precision == "int8" else None,
    )
    result = export_model(
        backend_cls.name,
        request,
        model_name=args.model,
        checkpoint=args.checkpoint,
        img_size=args.img_size,
        val_data=args.val_data,
        tolerance=tol,
    )
    print(f"wrote {result.model_file} ({result.model_file.stat().st_size / 1e6:.1f} MB) in {result.export_seconds:.1f}s")
    print(f"precision {result.precision}: executed as {result.executed_precision or 'not reported'}")
    print(f"manifest: {result.manifest}")
    return 0


def _int8_options(args: argparse.Namespace):
    from volo_deploy.quant.options import Int8Options
    from volo_deploy.quant.quantizer import CalibMethod

    return Int8Options(
        method=CalibMethod.parse(args.calib_method),
        calib_size=args.calib_size,
        max_drop=None if args.max_drop < 0 else args.max_drop,
        min_agreement=args.min_agreement,
        eval_data=args.eval_data,
        cache=args.calib_cache,
        include=tuple(args.quantize),
        exclude=tuple(args.keep_float),
        weight_bits=args.int8_weight_bits,
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
