"""The INT8 settings, as one frozen dataclass: every field marked with :func:`volo_deploy.options.flag`
is a flag of both ``volo-export`` and ``volo-bench`` (added by ``cli.options.add_option_flags``).

Accuracy budget: with labeled ``--eval-data`` (or the demo's digits val split) the top-1 drop vs FP32
(``--max-drop``); without it, the top-1 agreement with FP32 (``--min-agreement``, default
:data:`DEFAULT_MIN_AGREEMENT`) on a held-out slice of ``--calib-data`` that no calibration image is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from volo_deploy.data.layouts import LAYOUTS
from volo_deploy.options import finite_in, flag, positive_int
from volo_deploy.quant.quantizer import CalibMethod

#: Top-1 agreement (percent) required without labeled --eval-data: published W8A8 ViT PTQ loses
#: 0.1-0.3 top-1 points, which is about 1-3% of images changing their top-1.
DEFAULT_MIN_AGREEMENT = 97.0


_finite_number = finite_in(-math.inf, math.inf, "a finite number")


def _drop(text: str) -> float | None:
    """``--max-drop`` value: a negative number turns the check off (None)."""
    value = _finite_number(text)
    return None if value < 0 else value


_drop.__name__ = "float"
_percent = finite_in(0.0, 100.0, "a percentage in 0..100")
_cosine = finite_in(-1.0, 1.0, "a number in -1..1")


@dataclass(frozen=True)
class Int8Options:
    calib_data: Path | None = flag(
        "--calib-data", "INT8 calibration images: folder (any layout), list file or subset manifest; the "
        "accuracy budget's held-out slice comes from it too unless --eval-data is given (default: the bundled "
        "demo's digits manifest, for the demo model only)", None, parse=Path, metavar="PATH")
    calib_layout: str | None = flag(
        "--calib-layout", "layout of --calib-data (default: detected; names as for --layout)", None,
        choices=tuple(sorted(LAYOUTS)))
    method: CalibMethod = flag("--calib-method", "range estimation (default minmax)", CalibMethod.MINMAX,
                               parse=CalibMethod.parse, choices=tuple(m.value for m in CalibMethod))
    calib_size: int | None = flag(
        "--calib-size", "calibration images drawn (stratified) from --calib-data (default 300-1000 by class "
        "count, fewer when the folder must also give the held-out slice)", None, parse=positive_int)
    seed: int = flag("--calib-seed", "seed of the calibration and held-out draws (default 0; recorded)", 0, parse=int)
    max_drop: float | None = flag(
        "--max-drop", "with labeled --eval-data: top-1 points allowed below FP32; layers return to float "
        "until met (default 0.5; negative: no accuracy check at all)", 0.5, parse=_drop)
    min_agreement: float | None = flag(
        "--min-agreement", "%% of the budget's images whose top-1 must stay FP32's (default "
        f"{DEFAULT_MIN_AGREEMENT:g} without --eval-data, not checked with it)", None, parse=_percent)
    min_cosine: float | None = flag(
        "--min-cosine", "also require this mean INT8-vs-FP32 logit cosine on the budget's images "
        "(default: recorded, not checked)", None, parse=_cosine)
    eval_data: Path | None = flag(
        "--eval-data", "held-out LABELED images for --max-drop (default: a held-out slice of --calib-data, "
        "checked by agreement with FP32; the demo model: its digits val split)", None, parse=Path, metavar="PATH")
    eval_size: int | None = flag(
        "--eval-size", "images the budget is measured on (default: 1000 of --eval-data; held-out slice 50-200 "
        "by folder size)", None, parse=positive_int)
    cache: Path | None = flag(
        "--calib-cache", "calibration-range cache file (default: one per model/profile/method in the cache dir)",
        None, parse=Path, metavar="FILE")
    include: tuple[str, ...] = flag(
        "--quantize", "layer-name pattern quantized even if float by default, e.g. 'head' (repeatable)", (),
        metavar="PATTERN")
    exclude: tuple[str, ...] = flag(
        "--keep-float", "layer-name pattern kept in float (repeatable), e.g. 'network.0.*'", (), metavar="PATTERN")
    weight_bits: str = flag(
        "--int8-weight-bits", "CPU INT8 weights: 7 bits where the CPU has no VNNI/dot product (int16 "
        "saturation), else 8 (default auto: by this CPU)", "auto", choices=("auto", "7", "8"))
    runtime: str | None = None  # where the budget is measured (default: the profile's runtime)
    openvino_path: str = "qdq"  # OpenVINO only: "qdq" (our Q/DQ ONNX, profile openvino) or "nncf" (nncf.quantize)

    def budget_kind(self, demo: bool) -> str | None:
        """``"labels"`` (top-1 drop on labeled images), ``"agreement"`` (with FP32 on a held-out slice
        of the calibration source) or None (no accuracy check)."""
        if self.max_drop is None:
            return None
        return "labels" if self.eval_data is not None or (demo and self.calib_data is None) else "agreement"

    def agreement_floor(self, kind: str | None) -> float | None:
        """The top-1 agreement the budget requires (percent), by budget kind."""
        if self.min_agreement is not None or kind != "agreement":
            return self.min_agreement
        return DEFAULT_MIN_AGREEMENT
