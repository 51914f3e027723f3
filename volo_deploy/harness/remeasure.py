"""Re-time one backend x precision x batch cell of a bench report, for ``volo-gate --remeasure``.

Same artifact (checked by hash against its manifest, as ``volo-bench --artifacts`` reuses it),
same thread setting and number of timed calls as the report (at least :data:`MIN_WARMUP` warm-up
calls); only on the hardware the report was measured on. Inputs are random images of the
report's size: latency does not depend on pixel values (checked on the demo: onnxruntime and
OpenVINO int8, real digits vs random, medians within 3%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.harness.gate import Remeasure, RemeasureError


#: volo-bench times a case right after running every image through it; a fresh load needs more warm-up.
MIN_WARMUP = 10


def remeasurer(report: dict[str, Any]) -> Remeasure:
    """A ``remeasure(backend, precision, batch)`` for ``report``; RemeasureError when this machine
    is not the one the report was measured on."""
    from volo_deploy.harness.bench import thread_settings
    from volo_deploy.machine import describe_machine, hardware_fingerprint, summary_line

    requested = (report.get("threads") or {}).get("requested")
    threads = thread_settings(requested)
    here = describe_machine()
    if hardware_fingerprint(here, threads["torch_intra_op"]) != (report.get("fingerprints") or {}).get("hardware"):
        raise RemeasureError(f"this machine ({summary_line(here)}, {threads['torch_intra_op']} threads) is not the "
                             "one the report was measured on")
    cases = {(r["backend"], r["precision"]): r for r in report["results"]}
    settings = report["settings"]

    def remeasure(backend: str, precision: str, batch: int) -> list[float]:
        r = cases.get((backend, precision))
        if r is None or r.get("status") != "ok":
            raise RemeasureError(f"{backend} {precision} was not ok in the report")
        runner = _load(r, report["model"]["checkpoint_sha256"], requested)
        try:
            size = int(report["model"]["img_size"])
            x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
            for _ in range(max(int(settings["warmup"]), MIN_WARMUP)):
                runner.run(x)
            runner.times.clear()
            for _ in range(int(settings["iters"])):
                runner.run(x)
            return [t * 1e3 for t in runner.times]
        finally:
            runner.close()

    return remeasure


def _load(result: dict[str, Any], checkpoint_sha256: str, threads: int | None):
    from volo_deploy.harness.evaljob import load_runner
    from volo_deploy.harness.runner import reusable_artifact

    folder = Path((result.get("artifact") or {}).get("dir") or "")
    backend, precision = result["backend"], result["precision"]
    manifest, why = reusable_artifact(folder, backend, precision, checkpoint_sha256)
    if manifest is None:
        raise RemeasureError(f"artifact {folder}: {why} (keep exports with volo-bench --artifacts)")
    return load_runner(backend, precision, folder / manifest["model_file"], threads)
