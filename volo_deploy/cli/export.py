"""``volo-export``: export a VOLO checkpoint for one backend and validate it.

With no arguments it exports the bundled demo model to ONNX (``./volo_export``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from volo_deploy.backends import backend_help
from volo_deploy.cli.common import (
    EXIT_CODES_HELP,
    add_common_flags,
    check_layout_use,
    positive_int,
    run_cli,
    setup_logging,
)
from volo_deploy.cli.options import add_option_flags, cli_fields, options_from_args
from volo_deploy.data.classes import LabelOptions
from volo_deploy.quant.options import Int8Options


DEFAULT_BACKEND = "onnx"


def build_parser(backend_cls=None) -> argparse.ArgumentParser:
    """The parser with ``backend_cls``'s options; with None, ``--help`` lists every backend's options."""
    p = argparse.ArgumentParser(prog="volo-export", description=__doc__.splitlines()[0],
                                epilog=EXIT_CODES_HELP if backend_cls is not None
                                else every_backend_help() + "\n\n" + EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(p)
    p.add_argument("--backend", default=DEFAULT_BACKEND, help=f"{backend_help()} (default: {DEFAULT_BACKEND})")
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
    prec.add_argument("--int8", action="store_true", help="INT8 post-training quantization (Q/DQ; needs --calib-data except for the demo model)")
    add_option_flags(p.add_argument_group("INT8 (--int8)"), Int8Options)
    add_option_flags(p.add_argument_group("class names"), LabelOptions)
    p.add_argument("--val-data", type=Path, default=None, help="images to validate on (default: demo digits or synthetic)")
    p.add_argument("--atol", type=float, default=None, help="max abs logit error allowed in validation")
    p.add_argument("--output", type=Path, default=Path("volo_export"), help="output folder (default ./volo_export)")
    p.add_argument("--force", action="store_true", help="replace existing files in the output folder")
    if backend_cls is not None:
        add_option_flags(p.add_argument_group(options_heading(backend_cls)), backend_cls.Options)
    return p


def options_heading(backend_cls) -> str:
    return f"{backend_cls.name} options (--backend {backend_cls.name})"


def every_backend_help() -> str:
    """Each registered backend's options under its own heading (flags may repeat across backends)."""
    from volo_deploy.backends import backend_names, get_backend

    parts = []
    for name in backend_names():
        cls = get_backend(name)
        sub = argparse.ArgumentParser(prog="volo-export", usage=argparse.SUPPRESS, add_help=False)
        add_option_flags(sub.add_argument_group(options_heading(cls)), cls.Options)
        text = sub.format_help().strip()
        parts.append(text if text else f"{options_heading(cls)}:\n  (none)")
    return "\n\n".join(parts)


def flag_owners() -> dict[str, list[str]]:
    """Backend flag -> the backends that declare it (from the registry)."""
    from volo_deploy.backends import backend_names, get_backend

    owners: dict[str, list[str]] = {}
    for name in backend_names():
        for _, fl in cli_fields(get_backend(name).Options):
            owners.setdefault(fl.name, []).append(name)
    return owners


def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def refuse_extras(parser: argparse.ArgumentParser, extras: list[str], backend: str, explicit: bool) -> None:
    """Exit 2: a flag of another backend names its backend; anything else is unrecognized."""
    owners = flag_owners()
    for token in extras:
        names = owners.get(token.split("=", 1)[0], [])
        if names:
            what = f"{_article(names[0])} option" if len(names) == 1 else f"an option of {', '.join(names)}"
            fix = " or ".join(f"--backend {n}" for n in names)
            parser.error(f"{token.split('=', 1)[0]} is {what}"
                         + (f", not {_article(backend)} one: use {fix}" if explicit else f": add {fix}"))
    parser.error(f"unrecognized arguments: {' '.join(extras)}")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, type]:
    """Two passes: ``--backend`` (and whether help is asked) first, then the full parser for that backend."""
    from volo_deploy.backends import get_backend

    pre = argparse.ArgumentParser(prog="volo-export", add_help=False)
    pre.add_argument("--backend", default=None)
    pre.add_argument("-h", "--help", action="store_true")
    first, _ = pre.parse_known_args(argv)
    backend_cls = get_backend(first.backend or DEFAULT_BACKEND)
    parser = build_parser(None if first.help and first.backend is None else backend_cls)
    args, extras = parser.parse_known_args(argv)
    if extras:
        refuse_extras(parser, extras, backend_cls.name, explicit=first.backend is not None)
    return args, backend_cls


def _main(argv: list[str] | None) -> int:
    from volo_deploy.backends import ExportRequest
    from volo_deploy.backends.precision import precision_from_flags

    argv = sys.argv[1:] if argv is None else argv
    args, backend_cls = parse_args(argv)
    setup_logging(args)
    precision = precision_from_flags(fp16=args.fp16, bf16=args.bf16, int8=args.int8)
    check_layout_use("--calib-layout", args.calib_layout, "--calib-data", args.calib_data)
    quant = options_from_args(Int8Options, args)
    labels = options_from_args(LabelOptions, args)
    labels.check()
    if precision == "int8":  # refuse missing or too few images now, before the checkpoint is even read
        from volo_deploy.quant.data import is_bundled_demo, plan_int8_data

        plan_int8_data(quant, demo=is_bundled_demo(args.checkpoint, args.model))

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
        options=options_from_args(backend_cls.Options, args),
        quant=quant if precision == "int8" else None,
        labels=labels.labels,
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


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
