"""The naive export path the benchmarks compare against, and an interleaved timer.

Naive = timm's VOLO -> ``torch.onnx.export(dynamo=True)`` (4 Col2Im nodes). timm is
not a dependency of volo_deploy: give ``--timm-python`` (a venv's python with timm,
onnxscript) or ``--naive-onnx`` (a file made earlier). Without either, our own
``reference`` form (the published unfold/fold code, identical numbers) is exported
the same naive way, and the output says so.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CHILD_EXPORT = r"""
import json, resource, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
import torch
source, name, out, ckpt = sys.argv[1:5]
t0 = time.perf_counter()
if source == "timm":
    import timm
    model = timm.create_model(name, pretrained=False).eval()
    if ckpt:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(ckpt))
    x = torch.randn(2, 3, model.pos_embed.shape[1] * 16, model.pos_embed.shape[1] * 16)  # batch 1 would be baked into Reshapes
    torch.onnx.export(model, (x,), out, dynamo=True, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
elif source == "reference":
    from volo_deploy.models import load_model
    model, _ = load_model(ckpt or None, name)
    x = torch.randn(2, 3, model.cfg.img_size, model.cfg.img_size)  # batch 2: see above
    torch.onnx.export(model, (x,), out, dynamo=True, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
else:  # "ours:<backend>"
    from volo_deploy.backends import ExportRequest
    from volo_deploy.jobs.export import export_model
    from pathlib import Path
    res = export_model(source.split(":")[1], ExportRequest(output_dir=Path(out), dynamic_batch=True, force=True),
                       model_name=name, checkpoint=ckpt or None, n_validate=2)
    out = str(res.model_file)
secs = time.perf_counter() - t0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"path": out, "seconds": secs, "peak_rss_mb": rss_mb}))
"""


def export_in_subprocess(source: str, model: str, out: Path, checkpoint: Path | None, python: str = sys.executable) -> dict:
    """Run one export in a fresh process; returns {path, seconds, peak_rss_mb}.

    ``source``: ``timm``, ``reference`` (both naive dynamo ONNX) or ``ours:<backend>``.
    """
    proc = subprocess.run(
        [python, "-c", CHILD_EXPORT, source, model, str(out), str(checkpoint or "")],
        capture_output=True,
        text=True,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{source} export failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def naive_onnx(model: str, out: Path, checkpoint: Path | None, timm_python: str | None, given: Path | None) -> tuple[dict, str]:
    """The naive ONNX (path and export stats) and a label saying where it came from."""
    if given is not None:
        return {"path": str(given), "seconds": float("nan"), "peak_rss_mb": float("nan")}, f"given file {given}"
    if timm_python:
        return export_in_subprocess("timm", model, out, checkpoint, timm_python), "timm -> dynamo ONNX"
    return (
        export_in_subprocess("reference", model, out, checkpoint),
        "volo_deploy reference form (unfold/fold, = timm code) -> dynamo ONNX; pass --timm-python for timm itself",
    )


def interleaved_medians(fns: dict[str, Callable[[], object]], iters: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each fn, calls interleaved (A, B, A, B...) to share the noise."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
