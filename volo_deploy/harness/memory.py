"""Peak resident memory of a stage, sampled from the OS (no tracemalloc: runtimes allocate natively)."""

from __future__ import annotations

import os
import sys
import threading


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux ``/proc/self/statm``); None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def max_rss_bytes() -> int:
    """The process's peak RSS so far (``getrusage``; KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class MemoryProbe:
    """Context manager sampling RSS every ``interval`` s in a daemon thread.

    ``peak_mb`` is the highest RSS seen inside the block, ``increase_mb`` its rise over the
    RSS at entry (what the stage itself added). Without ``/proc`` it falls back to the
    process-wide ``getrusage`` peak.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = current_rss_bytes()
        if rss is not None:
            self.peak = max(self.peak, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "MemoryProbe":
        rss = current_rss_bytes()
        if rss is None:
            self.baseline = self.peak = max_rss_bytes()
            return self
        self.baseline = self.peak = rss
        self._thread = threading.Thread(target=self._loop, name="volo-memprobe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak = max(self.peak, max_rss_bytes())
            return
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def increase_mb(self) -> float:
        return max(self.peak - self.baseline, 0) / 2**20
