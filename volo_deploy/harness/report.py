"""Bench report: the versioned JSON schema, and the Markdown, CSV and plot renderings.

Schema ``volo_deploy.bench_report/1`` (``report.json``). Percentages are 0-100; times in
ms unless the key says seconds; sizes in bytes unless the key says MB.

- ``schema``: ``"volo_deploy.bench_report/1"``. A reader must refuse any other value.
- ``toolkit_version``, ``created`` (UTC ISO 8601), ``command`` (argv), ``elapsed_seconds``.
- ``fingerprints``: ``{"model": "sha256:<checkpoint file hash>", "data": "sha256:<hash of the
  ordered 'relative/path<TAB>label' lines of the images used>"}``. ``volo-gate`` compares
  reports only when both are equal.
- ``model``: ``name``, ``checkpoint``, ``checkpoint_sha256``, ``img_size``, ``num_classes``.
- ``data``: ``source``, ``layout``, ``n_images``, ``total_available``, ``labeled``,
  ``num_classes``, ``fingerprint``, ``skipped_images`` (unreadable, not used), ``notes``.
- ``settings``: ``backends``, ``precisions`` (null: each backend's own), ``batch_sizes``,
  ``warmup``, ``iters``, ``limit``, ``noisy_cv``, ``artifacts``, ``calib_data``,
  ``calib_layout`` (``--calib-layout``; null: detected; the layout of ``--data`` is ``data.layout``).
- ``threads``: ``requested``, ``torch_intra_op``, ``torch_inter_op``, ``env``, ``cpu_count``.
- ``fingerprints.hardware``: :func:`volo_deploy.machine.hardware_fingerprint` of the machine and
  the torch thread count; ``volo-gate`` compares latency only between equal ones (a report
  without it, made before it existed, counts as other hardware).
- ``machine`` (:func:`volo_deploy.machine.describe_machine`: platform, arch, processor, ``cpu``
  with model and ISA ``features``, cpu_count, python, ``gpus``), ``versions`` (library -> version or null).
- ``reference``: FP32 PyTorch, ``accuracy`` ``{top1_pct, top5_pct}`` or null without labels.
- ``results``: one object per backend x precision:

  - ``backend``, ``precision``, ``status``: ``ok`` | ``failed validation`` | ``export failed`` |
    ``run failed`` | ``unavailable`` | ``unsupported``; ``reason`` (null when ok).
  - ``executed_precision``: what the runtime reported computing in, read back from the loaded
    model (``fp32``, ``bf16``, ``int8+fp32``; OpenVINO ``fp16`` = FP16 weights computed in
    ``fp32``); null when not run or not reported. ``int8_weight_bits``: 8, or 7 where the
    exporting CPU had no VNNI / int8 dot product; null for other precisions.
  - ``artifact``: ``dir``, ``model_file``, ``size_bytes`` (all files), ``sha256``, ``reused``.
  - ``export_seconds``, ``calibration_seconds`` (null when none), ``validation`` (the export's
    check against FP32 PyTorch, as in the manifest).
  - ``accuracy``: ``top1_pct``, ``top5_pct``, ``delta_top1_pp`` (vs FP32 PyTorch, percentage
    points); null without labels.
  - ``agreement`` (all images, vs FP32 PyTorch): ``n``, ``top1_agreement_pct``, ``max_abs``,
    ``mean_abs``, ``max_rel``, ``cosine_min``, ``cosine_mean``.
  - ``latency``: ``{"<batch>": {batch, warmup, iters, p50_ms, p90_ms, p99_ms, mean_ms, std_ms,
    min_ms, max_ms, cv, throughput_ips, noisy, warning, samples_ms}}``. ``samples_ms``: the wall
    time of every timed call in ms, in call order (``iters`` values; added within
    ``bench_report/1``: older reports lack it and ``volo-gate`` then compares their ``p50_ms``).
  - ``throughput``: batch evaluation in the runtime's throughput mode at the largest batch size
    (several requests in flight; latency above is one request at a time): ``mode`` (label, e.g.
    the OpenVINO hint, streams and queue size), ``batch``, ``calls``, ``requests``, ``img_per_s``,
    ``latency_mode_img_per_s``; null where the runtime has no such mode (added within
    ``bench_report/1``).
  - ``memory``: ``peak_rss_mb`` (process RSS peak during the case), ``rss_increase_mb``.
  - ``load_options``, ``warnings`` (e.g. noisy latency), ``log`` (export messages).
  - ``node``: the machine that exported and timed this case (with ``--ray``, the worker's):
    ``hostname``, ``machine`` (:func:`volo_deploy.machine.describe_machine`),
    ``hardware_fingerprint``. A row's latency comes from that one machine, never merged.
- ``execution``: how the images were run: ``mode`` (``local`` | ``ray``; with Ray also
  ``ray_address``, ``ray_nodes``, ``ray_resources``, ``max_retries``), ``shard_size``,
  ``shards``, ``decode_workers``, ``decode_mode``, ``resumed`` (continued an interrupted run),
  ``reference_cache`` (``dir``, ``reference_cached`` / ``reference_computed`` shard counts).
- ``summary``: the rows of ``report.md`` as numbers (see :func:`result_rows_summary`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from volo_deploy.errors import BadInputError
from volo_deploy.machine import summary_line

SCHEMA = "volo_deploy.bench_report/1"
TABLE_HEADER = ("backend", "precision", "status", "size MB", "top-1", "delta vs FP32", "agreement", "p50 ms", "p99 ms", "img/s")


def load_report(path: str | Path, what: str = "report") -> dict[str, Any]:
    """Read and check a report JSON; :class:`BadInputError` (exit 2) when missing, invalid or another schema."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{what} {path}: not found")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"{what} {path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadInputError(f"{what} {path}: not a bench report (top level is not an object)")
    if obj.get("schema") != SCHEMA:
        raise BadInputError(f"{what} {path}: schema {obj.get('schema')!r}, this volo-gate reads {SCHEMA!r}")
    for key in ("fingerprints", "results"):
        if key not in obj:
            raise BadInputError(f"{what} {path}: missing {key!r}")
    return obj


def _latency_ends(report: dict[str, Any]) -> tuple[str, str]:
    sizes = [str(b) for b in report["settings"]["batch_sizes"]]
    return sizes[0], sizes[-1]


def result_rows_summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``report.md`` rows as numbers: p50/p99 at the first batch size, img/s at the last."""
    lat_bs, thr_bs = _latency_ends(report)
    rows = []
    for r in report["results"]:
        acc = r.get("accuracy") or {}
        lat = r.get("latency") or {}
        size = (r.get("artifact") or {}).get("size_bytes")
        rows.append(
            {
                "backend": r["backend"],
                "precision": r["precision"],
                "executed_precision": r.get("executed_precision"),
                "status": r["status"],
                "size_mb": size / 1e6 if size is not None else None,
                "top1_pct": acc.get("top1_pct"),
                "delta_top1_pp": acc.get("delta_top1_pp"),
                "agreement_pct": (r.get("agreement") or {}).get("top1_agreement_pct"),
                "p50_ms": lat.get(lat_bs, {}).get("p50_ms"),
                "p99_ms": lat.get(lat_bs, {}).get("p99_ms"),
                "img_per_s": lat.get(thr_bs, {}).get("throughput_ips"),
                "latency_batch": int(lat_bs),
                "throughput_batch": int(thr_bs),
            }
        )
    return rows


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def throughput_section(results: list[dict[str, Any]]) -> list[str]:
    """report.md lines: batch evaluation img/s in the runtime's throughput mode beside one request at a time."""
    rows = [r for r in results if r.get("throughput")]
    if not rows:
        return []
    out = ["## Batch evaluation img/s: throughput mode vs one request at a time (latency mode)", "",
           "| backend | precision | batch | throughput mode img/s | latency mode img/s | mode |", "|---|---|---|---|---|---|"]
    for r in rows:
        t = r["throughput"]
        out.append(f"| {r['backend']} | {r['precision']} | {t['batch']} | {t['img_per_s']:.1f} | "
                   f"{t['latency_mode_img_per_s']:.1f} | {t['mode']} |")
    return out + [""]


def markdown_table(report: dict[str, Any]) -> str:
    """The one-row-per-backend x precision table (header exactly :data:`TABLE_HEADER`)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    for s in report.get("summary") or result_rows_summary(report):
        cells = [
            s["backend"],
            s["precision"],
            s["status"],
            _fmt(s["size_mb"], ".2f"),
            _fmt(s["top1_pct"], ".2f", "%"),
            _fmt(s["delta_top1_pp"], "+.2f", " pp"),
            _fmt(s["agreement_pct"], ".2f", "%"),
            _fmt(s["p50_ms"], ".2f"),
            _fmt(s["p99_ms"], ".2f"),
            _fmt(s["img_per_s"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    lat_bs, thr_bs = _latency_ends(report)
    m, d, st = report["model"], report["data"], report["settings"]
    ref = (report.get("reference") or {}).get("accuracy") or {}
    out = [
        f"# volo-bench: {m['name']}",
        "",
        f"- model: `{m['checkpoint']}` ({report['fingerprints']['model'][:19]}...)",
        f"- data: {d['source']}, {d['n_images']} images ({d['layout']}), {report['fingerprints']['data'][:19]}...",
        f"- reference FP32 PyTorch top-1: {_fmt(ref.get('top1_pct'), '.2f', '%')}, "
        f"top-5: {_fmt(ref.get('top5_pct'), '.2f', '%')}",
        f"- machine: {summary_line(report['machine'])} ({report['fingerprints'].get('hardware', 'no hardware fingerprint')}); "
        f"threads: {report['threads'].get('requested') or 'default'} (torch {report['threads'].get('torch_intra_op')})",
        f"- timing: {st['warmup']} warm-up + {st['iters']} timed calls per batch size; "
        f"p50/p99 at batch {lat_bs}, img/s at batch {thr_bs}",
        "",
        markdown_table(report),
        "",
    ]
    sizes = [str(b) for b in st["batch_sizes"]]
    ok = [r for r in report["results"] if r.get("latency")]
    if ok:
        out += ["## Latency per batch size (ms)", "", "| backend | precision | batch | p50 | p90 | p99 | mean | CV | img/s |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in ok:
            for b in sizes:
                L = r["latency"].get(b)
                if L:
                    flag = " (noisy)" if L["noisy"] else ""
                    out.append(
                        f"| {r['backend']} | {r['precision']} | {b} | {L['p50_ms']:.2f} | {L['p90_ms']:.2f} | "
                        f"{L['p99_ms']:.2f} | {L['mean_ms']:.2f} | {L['cv']:.1%}{flag} | {L['throughput_ips']:.1f} |"
                    )
        out.append("")
    out += throughput_section(report["results"])
    notes = [f"- {r['backend']} {r['precision']}: {r['status']}: {r['reason']}" for r in report["results"] if r.get("reason")]
    notes += [f"- {r['backend']} {r['precision']}: {w}" for r in report["results"] for w in r.get("warnings", [])]
    notes += [f"- {r['backend']} {r['precision']}: runtime computes in {r['executed_precision']}"
              for r in report["results"] if r.get("executed_precision") not in (None, r["precision"])]
    notes += [f"- data: {n}" for n in d.get("notes", [])]
    if notes:
        out += ["## Notes", "", *notes, ""]
    return "\n".join(out)


CSV_FIELDS = (
    "backend", "precision", "status", "reason", "size_mb", "top1_pct", "top5_pct", "delta_top1_pp",
    "agreement_pct", "max_abs", "mean_abs", "cosine_min", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
    "cv", "throughput_ips", "noisy", "export_seconds", "calibration_seconds", "peak_rss_mb",
)


def to_csv(report: dict[str, Any]) -> str:
    """One row per backend x precision x batch size (one row without latency for a failed case)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in report["results"]:
        acc, agr = r.get("accuracy") or {}, r.get("agreement") or {}
        size = (r.get("artifact") or {}).get("size_bytes")
        base = {
            "backend": r["backend"], "precision": r["precision"], "status": r["status"], "reason": r.get("reason") or "",
            "size_mb": f"{size / 1e6:.4f}" if size is not None else "",
            "top1_pct": acc.get("top1_pct", ""), "top5_pct": acc.get("top5_pct", ""),
            "delta_top1_pp": acc.get("delta_top1_pp", ""), "agreement_pct": agr.get("top1_agreement_pct", ""),
            "max_abs": agr.get("max_abs", ""), "mean_abs": agr.get("mean_abs", ""), "cosine_min": agr.get("cosine_min", ""),
            "export_seconds": r.get("export_seconds") if r.get("export_seconds") is not None else "",
            "calibration_seconds": r.get("calibration_seconds") if r.get("calibration_seconds") is not None else "",
            "peak_rss_mb": (r.get("memory") or {}).get("peak_rss_mb", ""),
        }
        lat = r.get("latency") or {}
        if not lat:
            w.writerow(base)
        for b, L in lat.items():
            w.writerow({**base, "batch": b, **{k: L[k] for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "cv", "throughput_ips", "noisy")}})
    return buf.getvalue()


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """``accuracy_vs_latency.png`` and ``latency_percentiles.png`` (matplotlib Agg); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ok = [r for r in report["results"] if r["status"] == "ok" and r.get("latency")]
    lat_bs, _ = _latency_ends(report)
    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    labeled = bool(report["data"].get("labeled"))
    for r in ok:
        L = r["latency"].get(lat_bs)
        y = (r.get("accuracy") or {}).get("top1_pct") if labeled else (r.get("agreement") or {}).get("top1_agreement_pct")
        if L is None or y is None:
            continue
        ax.scatter(L["p50_ms"], y, s=45, label=f"{r['backend']}/{r['precision']}")
    _log_if_wide(ax, "x", [r["latency"][lat_bs]["p50_ms"] for r in ok if lat_bs in r["latency"]])
    if ok:
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(f"p50 latency, batch {lat_bs} (ms)")
    ax.set_ylabel("top-1 (%)" if labeled else "top-1 agreement with FP32 PyTorch (%)")
    ax.set_title(f"{report['model']['name']}: accuracy vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(_save(fig, out / "accuracy_vs_latency.png"))
    plt.close(fig)

    sizes = [str(b) for b in report["settings"]["batch_sizes"]]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.0), squeeze=False)
    for ax, b in zip(axes[0], sizes):
        names = [f"{r['backend']}\n{r['precision']}" for r in ok if b in r["latency"]]
        rows = [r["latency"][b] for r in ok if b in r["latency"]]
        for j, (key, label) in enumerate((("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))):
            ax.bar([i + (j - 1) * 0.27 for i in range(len(rows))], [L[key] for L in rows], width=0.27, label=label)
        _log_if_wide(ax, "y", [L[k] for L in rows for k in ("p50_ms", "p99_ms")])
        ax.set_xticks(range(len(rows)), names, fontsize=8)
        ax.set_title(f"batch {b}")
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{report['model']['name']}: latency percentiles")
    fig.tight_layout()
    written.append(_save(fig, out / "latency_percentiles.png"))
    plt.close(fig)
    return written


def _log_if_wide(ax, axis: str, values: list[float]) -> None:
    """Log scale when the values span more than 20x (one slow backend would flatten the rest)."""
    pos = [v for v in values if v and v > 0]
    if pos and max(pos) / min(pos) > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _save(fig, path: Path) -> Path:
    from volo_deploy.artifacts import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def write_outputs(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, report.csv and the plots into ``out`` (each atomically)."""
    from volo_deploy.artifacts import atomic_write_json, atomic_write_text

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot be created ({exc.strerror})") from None
    paths = {
        "json": atomic_write_json(out / "report.json", report),
        "md": atomic_write_text(out / "report.md", to_markdown(report)),
        "csv": atomic_write_text(out / "report.csv", to_csv(report)),
    }
    for p in write_plots(report, out):
        paths[p.stem] = p
    return paths
