"""Bench report files: report.json (schema: :mod:`volo_deploy.harness.report_schema`), and its
Markdown, CSV and plot renderings, published as one set (:func:`write_outputs`)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from volo_deploy.errors import BadInputError
from volo_deploy.harness.report_schema import SCHEMA, BenchReport, load_report  # noqa: F401 (re-exported)
from volo_deploy.machine import summary_line

TABLE_HEADER = ("backend", "precision", "status", "size MB", "top-1", "delta vs FP32", "agreement", "p50 ms", "p99 ms", "img/s")
#: The files of one report, in publishing order: report.json last (its presence marks a complete set).
REPORT_FILES = ("report.md", "report.csv", "accuracy_vs_latency.png", "latency_percentiles.png", "report.json")


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


def check_output_file(path: str | Path, what: str) -> Path:
    """The regular file ``path`` names, checked before anything is written (BadInputError, exit 2).

    Refused: an existing path that is not a regular file (FIFO, device, socket, folder), a path
    under a regular file, a folder that cannot be written. A symlink is followed: the regular file
    it points to is replaced (atomically) and the link stays; a dangling one creates its target.
    """
    import stat

    path = Path(path)
    real = Path(os.path.realpath(path))
    link = f" (a symlink to {real})" if real != path.absolute() else ""
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        mode = None
    except NotADirectoryError:
        mode = None
    except OSError as exc:
        raise BadInputError(f"{what} {path}{link}: cannot be checked ({exc.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}.get(stat.S_IFMT(mode), "not a regular file")
        raise BadInputError(f"{what} {path}{link}: is {kind}, not a regular file; left untouched")
    folder = real.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise BadInputError(f"{what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"{what} {path}: folder {folder} is not writable")
    return real


def write_file(path: str | Path, data: bytes, what: str) -> Path:
    """Write ``data`` to the checked ``path`` (:func:`check_output_file`) atomically; OSError -> exit 2."""
    from volo_deploy.artifacts import atomic_write_bytes

    real = check_output_file(path, what)
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(real, data)
    except OSError as exc:
        raise BadInputError(f"{what} {path}: cannot be written ({exc.strerror or exc})") from None


def write_outputs(report: dict[str, Any] | BenchReport, out: str | Path) -> dict[str, Path]:
    """Check ``report`` against the schema, then write report.json, .md, .csv and the plots into a
    staging folder inside ``out`` and publish them as a set, report.json last.

    A failure while staging publishes nothing (an older report in ``out`` stays whole); the old
    report.json is removed before the others are replaced, so a half-published set has none.
    """
    import shutil
    import tempfile

    from volo_deploy.artifacts import atomic_write_bytes, atomic_write_json

    typed = report if isinstance(report, BenchReport) else BenchReport.from_json(report, "bench report (not written)")
    data = typed.to_json()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"--out {out}: cannot be created ({exc.strerror})") from None
    for name in REPORT_FILES:
        check_output_file(out / name, "--out")
    staging = Path(tempfile.mkdtemp(prefix=".staging-report-", dir=out))
    try:
        atomic_write_bytes(staging / "report.md", to_markdown(data).encode())
        atomic_write_bytes(staging / "report.csv", to_csv(data).encode())
        write_plots(data, staging)
        atomic_write_json(staging / "report.json", data)
        return _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out: Path) -> dict[str, Path]:
    """Move the staged files into ``out``, report.json last; files of an older set not in this one go."""
    (out / "report.json").unlink(missing_ok=True)
    paths = {}
    for name in REPORT_FILES:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
            paths[{"report.json": "json", "report.md": "md", "report.csv": "csv"}.get(name, Path(name).stem)] = out / name
        elif name.endswith(".png"):
            (out / name).unlink(missing_ok=True)  # a plot of the previous report would not match this one
    return {k: paths[k] for k in ("json", "md", "csv") if k in paths} | {
        k: v for k, v in paths.items() if k not in ("json", "md", "csv")}
