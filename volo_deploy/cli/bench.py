"""``volo-bench``: accuracy and latency of every backend x precision against FP32 PyTorch.

With no arguments: the bundled demo model on the demo digits val set, over every backend
installed, into ``./volo_bench`` (report.json, report.md, report.csv, plots). Images are
streamed shard by shard (memory does not grow with their number), shard results kept in
``<out>/shards/`` for ``--resume``; ``--ray`` spreads cases and shards over a Ray cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from volo_deploy.cli.common import (
    EXIT_CODES_HELP,
    add_common_flags,
    add_layout_argument,
    check_layout_use,
    non_negative_int,
    positive_int,
    run_cli,
    setup_logging,
)
from volo_deploy.cli.options import add_option_flags, options_from_args
from volo_deploy.data.classes import LabelOptions
from volo_deploy.quant.options import Int8Options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="volo-bench", description=__doc__.splitlines()[0], epilog=EXIT_CODES_HELP)
    add_common_flags(p, quiet_help="show only warnings and errors, no progress bars")
    p.add_argument("--model", default=None, help="e.g. volo_d1_224 (default: detected from the checkpoint)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the bundled demo model)")
    p.add_argument("--data", type=Path, default=None,
                   help="eval images: ImageFolder / ImageNet val folder, or a 'path label' list file "
                        "(default: demo digits val)")
    add_layout_argument(p, "--layout", "--data")
    p.add_argument("--data-root", type=Path, default=None,
                   help="folder the paths of a --data list file or manifest are relative to (default: its own)")
    p.add_argument("--limit", type=positive_int, default=None, help="use N evenly spaced images (a fixed subset)")
    p.add_argument("--strict-data", action="store_true",
                   help="an unreadable image (truncated, empty, not an image) is an error before any work "
                        "(default: skipped in every row, listed in the report's data.skipped)")
    p.add_argument("--exif-transpose", action="store_true",
                   help="rotate images by their EXIF orientation first (default: ignored, as timm does; "
                        "the report counts the images it concerns)")
    p.add_argument("--backends", default=None, help="comma list, e.g. torch,onnxruntime,openvino,tensorrt "
                   "(default: every registered backend; missing runtimes are reported as unavailable)")
    p.add_argument("--precisions", default=None, help="comma list of fp32,fp16,bf16,int8 (default: each backend's own)")
    p.add_argument("--batch-sizes", default="1,8", help="comma list (default 1,8): p50/p99 at the first, img/s at the last")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls per batch size (default 5)")
    p.add_argument("--iters", type=positive_int, default=50, help="timed calls per batch size (default 50)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads for every runtime")
    p.add_argument("--throughput-mode", action="store_true",
                   help="also time batch evaluation in the runtime's throughput mode (OpenVINO: THROUGHPUT hint, several "
                        "requests in flight) at the largest batch size, reported beside latency (default: off)")
    p.add_argument("--artifacts", type=Path, default=None,
                   help="folder of exports to reuse (checked by hash against each manifest.json) or to fill; "
                        "default: <out>/shards/artifacts, kept for --resume and removed once the run completes")
    p.add_argument("--out", type=Path, default=Path("volo_bench"), help="output folder (default ./volo_bench)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (same flags; refused if its configuration differs)")
    p.add_argument("--shard-size", type=positive_int, default=1000,
                   help="images per data shard, the unit of resume and of Ray tasks (default 1000)")
    p.add_argument("--decode-workers", type=non_negative_int, default=2,
                   help="image decoding threads (or processes) ahead of the model; 0: decode inline (default 2)")
    p.add_argument("--decode-mode", choices=("thread", "process"), default="thread",
                   help="decode in a thread pool (default) or a process pool")
    p.add_argument("--ray", default=None, metavar="local|auto|ADDRESS",
                   help="run cases and data shards as Ray tasks: 'local' starts Ray here, 'auto' or an address "
                        "joins a cluster (pip install 'volo_deploy[ray]')")
    p.add_argument("--ray-resources", action="append", default=[], metavar="BACKEND=RES:N[,RES:N]",
                   help="custom Ray resources a backend's tasks request, e.g. tensorrt=jetson_orin:1 (repeatable)")
    add_option_flags(p.add_argument_group(
        "INT8 rows (without --calib-data: images of --data calibrate and are left out of every row's evaluation)"),
        Int8Options)
    add_option_flags(p.add_argument_group("class names"), LabelOptions)
    return p


def _main(argv: list[str] | None) -> int:
    from volo_deploy.harness.bench import BenchConfig, failed_rows, parse_list, parse_ray_resources, run_bench
    from volo_deploy.harness.shards import out_folder_lock
    from volo_deploy.harness.report import markdown_table, write_outputs

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    setup_logging(args)
    check_layout_use("--layout", args.layout, "--data", args.data)
    check_layout_use("--calib-layout", args.calib_layout, "--calib-data", args.calib_data)
    batch_sizes = parse_list(args.batch_sizes, int)
    if any(b <= 0 for b in batch_sizes):
        from volo_deploy.errors import BadInputError

        raise BadInputError(f"--batch-sizes {args.batch_sizes}: sizes must be positive")
    cfg = BenchConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        data=args.data,
        data_root=args.data_root,
        limit=args.limit,
        backends=parse_list(args.backends) if args.backends else None,
        precisions=tuple(p.lower() for p in parse_list(args.precisions)) if args.precisions else None,
        batch_sizes=batch_sizes,
        warmup=args.warmup,
        iters=args.iters,
        throughput_mode=args.throughput_mode,
        threads=args.threads,
        artifacts=args.artifacts,
        data_layout=args.layout,
        int8=options_from_args(Int8Options, args),
        labels=_labels(args),
        progress=not args.quiet,
        command=["volo-bench", *argv],
        out=args.out,
        resume=args.resume,
        shard_size=args.shard_size,
        decode_workers=args.decode_workers,
        decode_mode=args.decode_mode,
        ray=args.ray,
        ray_resources=parse_ray_resources(args.ray_resources),
        strict_data=args.strict_data,
        exif_transpose=args.exif_transpose,
    )
    with out_folder_lock(args.out):  # held until every report file is written
        report = run_bench(cfg)
        paths = write_outputs(report, args.out)
    print(markdown_table(report))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    failed = failed_rows(report)
    if failed:
        print(f"error: {len(failed)} of {len(report['results'])} row(s) failed: "
              + "; ".join(f"{r['backend']} {r['precision']}: {r['status']}" for r in failed)
              + " (reasons in the report)", file=sys.stderr)
        return 1
    return 0


def _labels(args: argparse.Namespace) -> Path | None:
    labels = options_from_args(LabelOptions, args)
    labels.check()
    return labels.labels


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
