"""``volo-export --int8`` settings, as one frozen dataclass (built by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from volo_deploy.quant.quantizer import CalibMethod


@dataclass(frozen=True)
class Int8Options:
    method: CalibMethod = CalibMethod.MINMAX
    calib_size: int | None = None  # None: the demo manifest / 300-1000 by class count
    seed: int = 0
    max_drop: float | None = 0.5  # top-1 points vs FP32; None: no accuracy check
    min_agreement: float | None = None  # percent of eval images whose top-1 matches FP32; None: not checked
    eval_data: Path | None = None  # None: the demo's digits val split
    eval_size: int | None = 1000
    cache: Path | None = None  # calibration cache file (default: per model/profile/method in the cache dir)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    runtime: str | None = None  # where --max-drop is measured (default: the profile's runtime)
    weight_bits: str = "auto"  # CPU profiles: "auto" (7 without VNNI / int8 dot product, else 8), "7" or "8"
    openvino_path: str = "qdq"  # OpenVINO only: "qdq" (our Q/DQ ONNX, profile openvino) or "nncf" (nncf.quantize)
