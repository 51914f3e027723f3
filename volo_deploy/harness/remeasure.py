"""Re-time one backend x precision x batch cell of a bench report, for volo-gate's re-timing (default on).

Same artifact (checked by hash against its manifest and against the report's recorded sha256,
as ``volo-bench --artifacts`` reuses it), same thread setting and number of timed calls as the
report (at least :data:`MIN_WARMUP` warm-up and :data:`MIN_ITERS` timed calls); only on the hardware the report was measured
on. Where the baseline's artifact is also here (same checks) and was run with the same library
and toolkit versions, threads and load options, it is timed interleaved with the candidate's, call by call in
alternating order, so a busy period of the machine slows both. Inputs are random images of the
report's size: latency does not depend on pixel values (checked on the demo: onnxruntime and
OpenVINO int8, real digits vs random, medians within 3%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.harness.gate import RemeasureError, Retiming
from volo_deploy.harness.report_schema import BenchReport, Result

#: volo-bench times a case right after running every image through it; a fresh load needs more warm-up.
MIN_WARMUP = 10
#: Fewest timed calls of a re-timing (a report made with fewer gives a bound too wide to decide on).
MIN_ITERS = 20


class Remeasurer:
    """``remeasure(backend, precision, batch)`` -> :class:`Retiming` for ``report`` (and ``baseline``).

    The runners of the last cell stay loaded for its next round, except that an interleaved cell is loaded
    again in the other order each round (the baseline's artifact first, then the candidate's, then the
    reverse): two loads of the same model can run at different speeds in one process, and a bias that comes
    from the load order then shows with both signs. :meth:`close` releases them."""

    def __init__(self, report: BenchReport, baseline: BenchReport | None = None) -> None:
        from volo_deploy.harness.bench import thread_settings
        from volo_deploy.machine import describe_machine, hardware_fingerprint, summary_line

        _same_cpu(report)
        self.requested = (report.get("threads") or {}).get("requested")
        threads = thread_settings(self.requested)
        here = describe_machine()
        if hardware_fingerprint(here, threads["torch_intra_op"]) != report.fingerprints.hardware:
            raise RemeasureError(f"this machine ({summary_line(here)}, {threads['torch_intra_op']} threads) is not "
                                 "the one the report was measured on")
        if report.model is None or not report.model.checkpoint_sha256 or not report.model.img_size:
            raise RemeasureError("the report does not record the model's checkpoint hash and image size")
        self.report, self.baseline = report, baseline
        self._cell: tuple[str, str] | None = None
        self._runners: tuple[Any, Any | None, str] = (None, None, "")
        self._candidate_first = False  # load order of the current interleaved cell

    def __call__(self, backend: str, precision: str, batch: int, interleaved_only: bool = False) -> Retiming | None:
        """Time the cell (``interleaved_only``: None, untimed, when the baseline's artifact cannot be timed beside it)."""
        loaded = self._load(backend, precision, interleaved_only)
        if loaded is None:
            return None
        cand, base, note = loaded
        size = int(self.report.model.img_size)
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        warmup = max(int(self.report.settings.warmup or 0), MIN_WARMUP)
        iters = max(int(self.report.settings.iters or 0), MIN_ITERS)
        times = _interleaved([cand] + ([base] if base is not None else []), x, warmup, iters)
        return Retiming(times[0], times[1] if base is not None else None, note)

    def _load(self, backend: str, precision: str, interleaved_only: bool) -> tuple[Any, Any | None, str] | None:
        if self._cell == (backend, precision) and self._runners[1] is not None:  # next round: the other load order
            first = not self._candidate_first
            self.close()
            self._candidate_first = first
        if self._cell != (backend, precision):
            self.close()
            row = self.report.row(backend, precision)
            if row is None or not row.ok:
                raise RemeasureError(f"{backend} {precision} was not ok in the report")
            base, note, cand = None, self._baseline_why(row), None
            if self._candidate_first:
                cand = _load(row, self.report.model.checkpoint_sha256, self.requested)
            if not note:
                try:
                    base = _load(self.baseline.row(backend, precision), self.report.model.checkpoint_sha256,
                                 self.requested)
                except RemeasureError as exc:
                    note = f"baseline's {exc}"
            if note and interleaved_only:
                if cand is not None:
                    cand.close()
                return None
            if cand is None:
                cand = _load(row, self.report.model.checkpoint_sha256, self.requested)
            if note:
                note = f"not interleaved ({note}): compared with the baseline's stored samples"
            self._cell, self._runners = (backend, precision), (cand, base, note)
        if interleaved_only and self._runners[1] is None:
            return None
        return self._runners

    def _baseline_why(self, row: Result) -> str:
        """'' when the baseline's artifact of ``row``'s cell may be timed beside it, else why not."""
        b = self.baseline
        if b is None:
            return "no baseline given"
        brow = b.row(row.backend, row.precision)
        if brow is None or not brow.ok or not brow.artifact:
            return "the baseline has no artifact for this case"
        if b.fingerprints.hardware != self.report.fingerprints.hardware:
            return "the baseline was measured on other hardware"
        if (b.get("threads") or {}).get("requested") != self.requested:
            return "the baseline ran with another --threads"
        if b.get("versions") != self.report.get("versions") or b.get("toolkit_version") != self.report.get(
                "toolkit_version"):
            return "the baseline ran with other library or toolkit versions; both would be timed with today's"
        if brow.load_options != row.load_options:
            return f"the baseline loaded it with other options ({brow.load_options})"
        return ""

    def close(self) -> None:
        for r in self._runners[:2]:
            if r is not None:
                r.close()
        self._cell, self._runners, self._candidate_first = None, (None, None, ""), False


def _same_cpu(report: BenchReport) -> None:
    """RemeasureError when the report's CPU is not this one (decided before torch is imported)."""
    import os

    from volo_deploy.machine import cpu_info

    recorded = report.get("machine") or {}
    here = {"cpu": cpu_info(), "cpu_count": os.cpu_count()}
    mine = ((recorded.get("cpu") or {}).get("model"), sorted((recorded.get("cpu") or {}).get("features") or []),
            recorded.get("cpu_count"))
    if recorded and mine != (here["cpu"].get("model"), sorted(here["cpu"].get("features") or []), here["cpu_count"]):
        raise RemeasureError(f"this machine ({here['cpu'].get('model')}, {here['cpu_count']} CPUs) is not the one "
                             "the report was measured on")


def remeasurer(report: BenchReport, baseline: BenchReport | None = None) -> Remeasurer:
    """A :class:`Remeasurer`; RemeasureError when this machine is not the one the report was measured on."""
    return Remeasurer(report, baseline)


def _interleaved(runners: list, x: np.ndarray, warmup: int, iters: int) -> list[list[float]]:
    """Per-call ms of each runner, timed call by call in alternating order after each one's warm-up."""
    for r in runners:
        for _ in range(warmup):
            r.run(x)
        r.times.clear()
    for i in range(iters):
        for r in runners if i % 2 == 0 else runners[::-1]:
            r.run(x)
    return [[t * 1e3 for t in r.times] for r in runners]


def _load(result: Result, checkpoint_sha256: str, threads: int | None):
    from volo_deploy.harness.evaljob import load_runner
    from volo_deploy.harness.runner import reusable_artifact

    art = result.artifact or {}
    folder = Path(art.get("dir") or "")
    backend, precision = result.backend, result.precision
    manifest, why = reusable_artifact(folder, backend, precision, checkpoint_sha256)
    if manifest is None:
        raise RemeasureError(f"artifact {folder}: {why} (keep exports with volo-bench --artifacts)")
    files = {f["path"]: f["sha256"] for f in manifest.get("files", [])}
    if art.get("sha256") and files.get(manifest["model_file"]) != art["sha256"]:
        raise RemeasureError(f"artifact {folder}: replaced since the report (another export's model file)")
    return load_runner(backend, precision, folder / manifest["model_file"], threads)
