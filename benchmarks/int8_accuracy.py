"""Demo model INT8 accuracy: FP32 vs INT8 top-1 on the digits val split (360 images),
per runtime, profile and calibration method, plus NNCF's native OpenVINO path.

    python benchmarks/int8_accuracy.py [--methods minmax,percentile,entropy] [--max-drop 0.5] [--min-agreement 99]

Raw numbers (no layer returned to float): ``--max-drop 100 --min-agreement -1``.

Calibration: the shipped demo manifest (digits train, 300 images, seed 0). Targets:
top-1 drop <= 0.5 points and top-1 agreement with FP32 >= 99% on onnxruntime and OpenVINO.

Measured (2-core AVX2 box; FP32 top-1 98.33 on every runtime; default placement: attention
batched matmuls and the heads float, everything else int8; INT8 top-1 / agreement with FP32)::

    profile (runtime)          minmax          percentile      entropy
    onnxruntime (ORT)          98.89 / 99.44   98.61 / 99.72   99.17 / 99.17
    openvino (OpenVINO)        98.89 / 99.44   98.89 / 99.44   99.17 / 99.17
    tensorrt (run on ORT)      98.89 / 99.44   99.17 / 99.17   99.17 / 99.17
    NNCF native (OpenVINO)     98.89 / 99.44 (TRANSFORMER, mixed, 300 images)

Calibration (300 images, batch 1): minmax 2-4 s, percentile 3-7 s, entropy 15-29 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="minmax,percentile,entropy")
    ap.add_argument("--profiles", default="onnxruntime,openvino,tensorrt")
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--min-agreement", type=float, default=99.0, help="percent; negative: not checked")
    ap.add_argument("--no-nncf", action="store_true")
    args = ap.parse_args()

    from volo_deploy.errors import QuantizationError
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.models import load_model
    from volo_deploy.quant.budget import quantize_within_budget
    from volo_deploy.quant.data import calibration_set, eval_set
    from volo_deploy.quant.evaluate import logits, top1
    from volo_deploy.quant.quantizer import CalibMethod, QuantConfig

    model, info = load_model()
    proto = to_onnx_proto(model, batch=1)
    calib, ev = calibration_set(model.cfg), eval_set(model.cfg)
    print(f"{info.describe()}; calibration {len(calib.x)} images ({calib.source}), eval {len(ev.x)} images")
    rows = []
    for prof in args.profiles.split(","):
        for method in args.methods.split(","):
            t = time.perf_counter()
            try:
                r, rep = quantize_within_budget(
                    proto, calib.x, ev.x, ev.labels, profile=prof,
                    config=QuantConfig(method=CalibMethod.parse(method)), max_drop=args.max_drop,
                    min_agreement=None if args.min_agreement < 0 else args.min_agreement,
                )
            except QuantizationError as exc:
                rows.append(f"{prof:<12} {method:<11} FAILED: {exc}")
                continue
            raw = rep.steps[0]
            rows.append(
                f"{prof:<12} {method:<11} {rep.runtime:<12} fp32 {rep.fp32_top1:6.2f}  all-int8 {raw['int8_top1']:6.2f} "
                f"(agree {raw['agreement']:6.2f}%) -> int8 {rep.int8_top1:6.2f}  "
                f"drop {rep.drop:5.2f}  agree {rep.agreement:6.2f}%  calib {r.calibration_seconds:5.1f}s  "
                f"total {time.perf_counter() - t:5.1f}s  float: {', '.join(x.name for x in r.kept_float)}"
            )
            print(rows[-1], flush=True)
    if not args.no_nncf:
        from volo_deploy.quant.nncf_openvino import nncf_quantize_openvino, ov_logits

        t = time.perf_counter()
        q = nncf_quantize_openvino(proto, calib.x, subset_size=len(calib.x))
        calib_s = time.perf_counter() - t
        ref, got = logits(proto, ev.x, "openvino"), ov_logits(q, ev.x)
        a, b = top1(ref, ev.labels), top1(got, ev.labels)
        rows.append(
            f"{'nncf':<12} {'nncf-mixed':<11} {'openvino':<12} fp32 {a:6.2f}  int8 {b:6.2f}  drop {a - b:5.2f}  "
            f"agree {(ref.argmax(1) == got.argmax(1)).mean() * 100:6.2f}%  calib {calib_s:5.1f}s  float: head, aux_head"
        )
        print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
