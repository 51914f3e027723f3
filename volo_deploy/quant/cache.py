"""Calibration cache: ranges computed once, keyed by everything they depend on.

The file holds the key (model hash, calibration-data hash, method, its parameters, profile)
next to onnxruntime's own calibration cache (its ``TensorsData`` JSON), so a hit feeds
the ranges straight back to ``quantize_static`` and no calibration inference runs. A file
whose key differs is reported (``CacheStatus.differs``) and recomputed, never reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from volo_deploy.errors import QuantizationError

CACHE_FORMAT = "volo_deploy.calib_cache/1"


@dataclass(frozen=True)
class CacheKey:
    model_sha256: str
    data_sha256: str
    method: str
    method_params: str
    profile: str

    def differences(self, other: "CacheKey") -> list[str]:
        a, b = asdict(self), asdict(other)
        return [f"{k}: cached {b[k]!r:.24} != now {a[k]!r:.24}" for k in a if a[k] != b[k]]


@dataclass
class CacheStatus:
    path: str | None
    status: str  # "off" | "miss" | "hit" | "mismatch"
    differs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def model_sha256(proto) -> str:
    """Hash of the FP32 model as serialized deterministically (graph, weights, functions)."""
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def array_sha256(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_cache(path: Path, key: CacheKey) -> tuple[dict | None, CacheStatus]:
    """(onnxruntime cache dict, status): the dict only when ``path`` exists and its key matches."""
    if not path.exists():
        return None, CacheStatus(str(path), "miss")
    try:
        doc = json.loads(path.read_text())
        cached = CacheKey(**doc["key"])
        ort = doc["ort"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise QuantizationError(f"calibration cache {path}: unreadable ({exc}); delete it or pick another path") from None
    if doc.get("format") != CACHE_FORMAT:
        return None, CacheStatus(str(path), "mismatch", [f"format {doc.get('format')!r}"])
    diff = key.differences(cached)
    if diff:
        return None, CacheStatus(str(path), "mismatch", diff)
    return ort, CacheStatus(str(path), "hit")


def write_cache(path: Path, key: CacheKey, ort_cache: dict, info: dict) -> None:
    from volo_deploy.artifacts import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"format": CACHE_FORMAT, "key": asdict(key), **info, "ort": ort_cache})
