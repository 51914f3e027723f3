"""What DeepStream-style preprocessing costs the demo model, versus our eval transform.

    python benchmarks/preprocess_fidelity.py

DeepStream's nvinfer does not apply our center crop: it scales the whole frame to the network
size, stretched (``maintain-aspect-ratio=0``) or letterboxed with black padding
(``maintain-aspect-ratio=1``, ``symmetric-padding`` 1 = centered, 0 = right/bottom), with its own
interpolation (``scaling-filter``: 0 nearest, 1 bilinear), then ``net-scale-factor * (x - offsets)``
with one scale for all channels. This script emulates those variants in numpy (plain bilinear /
nearest with half-pixel centers and no antialiasing, as GPU scalers do; not NVIDIA's code), runs the
demo's FP32 model on onnxruntime on the 360 held-out digits, and prints top-1 and top-1 agreement
with our transform.

Scenes (the 8x8 digits, grey -> RGB):
  square    the digit image itself (aspect 1:1, our transform upscales it bicubic)
  4:3       the digit upscaled x6 (bicubic, 48x48) centered on a black 64x48 (W x H) frame
  4:3 off   same frame, digit 8 px right of center (touching the right edge: our center crop,
            64 of the 85 px the frame is resized to, cuts part of it)

Measured (AMD EPYC Zen 4, 2 cores, onnxruntime 1.32, demo FP32, 360 images; top-1 % /
agreement with ours %)::

    scene    ours (crop)     DS stretch      DS stretch      DS letterbox    DS letterbox
                             bilinear        nearest         centered        top-left
    square   98.33 / 100.00  98.89 / 99.44   98.61 / 99.17   98.89 / 99.44   98.89 / 99.44
    4:3      98.61 / 100.00  98.33 / 98.06   98.33 / 98.06   79.44 / 80.00   46.11 / 46.11
    4:3 off  94.72 / 100.00  95.83 / 93.89   95.56 / 93.61   78.89 / 75.28   45.00 / 42.78

Reading: on square frames only the interpolation differs (bilinear vs our bicubic: 0.6% of the
predictions change). On 4:3 frames stretching costs little for this model (it squeezes the digit
by 3/4 horizontally), but letterboxing shrinks the digit to 3/4 and moves it (top-left padding
even off-center): top-1 falls to 79% and 46%. A model trained on center crops wants the crop:
crop the frame before nvinfer (or in nvdspreprocess) rather than letterbox.

The demo's std is equal on all channels, so the single DeepStream scale is exact here; for
ImageNet's std (0.229, 0.224, 0.225) the best single scale is off by up to 1.1% per channel
(``volo_deploy.export.jetson_bundle.configs.deepstream_normalization``). The bundle's DeepStream
graph (``volo_deploy.export.trt_deepstream``: 1/std folded into the first convolution, softmax out)
makes nvinfer's ``net-scale-factor=1/255`` and ``offsets=255*mean`` exact. ``--normalization``
measures it on the same nvinfer-style bilinear pixels, softmax probabilities against our
normalization (AMD EPYC Zen 5, 2 shared cores, onnxruntime 1.32, 174 s)::

    python benchmarks/preprocess_fidelity.py --normalization

    model (images)                        normalization                max |dp|  max |d log p|  top-1 agr.
    demo, std (0.5,)*3 (360 digits)       single scale, logits graph   4.8e-07   2.4e-06        100.00 %
                                          DeepStream graph (folded)    4.8e-07   2.4e-06        100.00 %
    VOLO-D1 64 px, ImageNet std,          single scale (1.10% worst)   5.0e-04   2.3e-02        100.00 %
    untrained deterministic (64 synth.)   DeepStream graph (folded)    1.0e-07   3.8e-06        100.00 %

(untrained D1 probabilities are nearly uniform over 1000 classes, so |dp| is small; the log-prob
difference is the logit error: 2.3e-2 for the single scale, float rounding for the folded graph).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def resize(arr: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    """(H, W, C) float resize with half-pixel centers, no antialiasing: ``bilinear`` or ``nearest``."""
    h, w = arr.shape[:2]
    ys = (np.arange(out_h) + 0.5) * h / out_h - 0.5
    xs = (np.arange(out_w) + 0.5) * w / out_w - 0.5
    if mode == "nearest":
        yi = np.clip(np.floor(ys + 0.5), 0, h - 1).astype(int)
        xi = np.clip(np.floor(xs + 0.5), 0, w - 1).astype(int)
        return arr[yi][:, xi]
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    top = arr[y0c][:, x0c] * (1 - fx) + arr[y0c][:, x1c] * fx
    bottom = arr[y1c][:, x0c] * (1 - fx) + arr[y1c][:, x1c] * fx
    return top * (1 - fy) + bottom * fy


def deepstream(img: Image.Image, size: int, scale: float, offsets, mode: str, letterbox: bool,
               symmetric: bool) -> np.ndarray:
    """nvinfer-style preprocessing of a whole frame -> float32 (3, size, size)."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = arr.shape[:2]
    if letterbox:
        r = min(size / w, size / h)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        canvas = np.zeros((size, size, 3), np.float32)
        top, left = ((size - nh) // 2, (size - nw) // 2) if symmetric else (0, 0)
        canvas[top : top + nh, left : left + nw] = resize(arr, nh, nw, mode)
        arr = canvas
    else:
        arr = resize(arr, size, size, mode)
    arr = np.clip(np.round(arr), 0, 255)  # the scaler writes 8-bit RGBA
    out = scale * (arr - np.asarray(offsets, np.float32))
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def scenes(digits: np.ndarray) -> dict[str, list[Image.Image]]:
    square = [Image.fromarray(d, mode="L") for d in digits]
    out = {"square": square}
    for name, shift in (("4:3", 0), ("4:3 off", 8)):
        frames = []
        for img in square:
            big = img.resize((48, 48), Image.BICUBIC)
            frame = Image.new("L", (64, 48))
            frame.paste(big, (8 + shift, 0))
            frames.append(frame)
        out[name] = frames
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def normalization_rows(model, images: list[Image.Image]) -> list[str]:
    """The DeepStream graph (1/std folded, softmax) on nvinfer's exact ``x/255 - mean`` vs our normalization
    + softmax, and the old single-scale config; same nvinfer-style bilinear pixels for all three."""
    import onnxruntime as ort

    from volo_deploy.export.jetson_bundle.configs import deepstream_normalization as single_scale
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.export.trt_deepstream import deepstream_normalization, to_deepstream_graph

    cfg = model.cfg
    proto = to_onnx_proto(model, batch=1, dynamic_batch=True)
    ds_proto, how = to_deepstream_graph(proto, cfg.std)
    run = {name: ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
           for name, p in (("ours", proto), ("ds", ds_proto))}
    ones = (1.0, [0.0, 0.0, 0.0])
    px = np.stack([deepstream(im, cfg.img_size, *ones, "bilinear", False, False) for im in images])  # 0-255
    mean, std = np.asarray(cfg.mean)[None, :, None, None], np.asarray(cfg.std)[None, :, None, None]
    ref = _softmax(run["ours"].run(None, {"input": ((px / 255 - mean) / std).astype(np.float32)})[0])
    scale, offsets, err = single_scale(cfg.mean, cfg.std)
    old = _softmax(run["ours"].run(None, {"input": (scale * (px - np.asarray(offsets)[None, :, None, None]))
                                          .astype(np.float32)})[0])
    s, off = deepstream_normalization(cfg.mean)
    new = run["ds"].run(None, {"input": (s * (px - np.asarray(off)[None, :, None, None])).astype(np.float32)})[0]
    rows = [f"{cfg.name} (std {tuple(cfg.std)}; single-scale worst error {err:.2%}; DeepStream graph: 1/std {how})"]
    for name, p in (("single scale, logits graph", old), ("DeepStream graph (folded)", new)):
        logp = np.abs(np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(ref, 1e-30))).max()
        rows.append(f"| {name} | {np.abs(p - ref).max():.2e} | {logp:.2e} | "
                    f"{100 * np.mean(p.argmax(1) == ref.argmax(1)):.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normalization", action="store_true",
                    help="only the normalization: DeepStream graph vs the single-scale config (demo + VOLO-D1 64 px)")
    args = ap.parse_args()
    if args.normalization:
        return normalization_main()
    import onnxruntime as ort

    from volo_deploy.data.digits import load_digits_arrays
    from volo_deploy.data.transforms import EvalTransform
    from volo_deploy.export.jetson_bundle.configs import deepstream_normalization
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.models import load_model

    model, info = load_model()
    cfg = model.cfg
    sess = ort.InferenceSession(to_onnx_proto(model, batch=1, dynamic_batch=True).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    digits, labels = load_digits_arrays("val")
    ours = EvalTransform.for_config(cfg)
    scale, offsets, _ = deepstream_normalization(cfg.mean, cfg.std)
    variants = {
        "ours (crop)": ours,
        "DS stretch bilinear": lambda im: deepstream(im, cfg.img_size, scale, offsets, "bilinear", False, False),
        "DS stretch nearest": lambda im: deepstream(im, cfg.img_size, scale, offsets, "nearest", False, False),
        "DS letterbox centered": lambda im: deepstream(im, cfg.img_size, scale, offsets, "bilinear", True, True),
        "DS letterbox top-left": lambda im: deepstream(im, cfg.img_size, scale, offsets, "bilinear", True, False),
    }
    print(f"{info.describe()}; {len(labels)} held-out digits; onnxruntime {ort.__version__}")
    print("| scene | " + " | ".join(variants) + " |\n|---|" + "---|" * len(variants))
    t0 = time.perf_counter()
    for scene, imgs in scenes(digits).items():
        preds = {}
        for name, fn in variants.items():
            x = np.stack([fn(im) for im in imgs])
            logits = np.concatenate([sess.run(None, {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])
            preds[name] = logits.argmax(1)
        ref = preds["ours (crop)"]
        cells = [f"{100 * np.mean(p == labels):.2f} / {100 * np.mean(p == ref):.2f}" for p in preds.values()]
        print(f"| {scene} | " + " | ".join(cells) + " |")
    print(f"({time.perf_counter() - t0:.1f} s; cells: top-1 % / top-1 agreement with ours %)")


def normalization_main() -> None:
    """Softmax probabilities vs ours (max abs difference, top-1 agreement %): the demo on its held-out
    digits (equal stds) and VOLO-D1 at 64 px with ImageNet's std (deterministic untrained weights)."""
    from volo_deploy.data.digits import load_digits_arrays
    from volo_deploy.data.samples import synthetic_images
    from volo_deploy.models import create_model, load_model
    from volo_deploy.models.init import fill_deterministic

    digits, _ = load_digits_arrays("val")
    d1 = fill_deterministic(create_model("volo_d1_224", img_size=64)).eval()
    t0 = time.perf_counter()
    for model, imgs in ((load_model()[0], [Image.fromarray(d, mode="L") for d in digits]),
                        (d1, synthetic_images(64, 64))):
        head, *rows = normalization_rows(model, imgs)
        print(f"{head}; {len(imgs)} images\n| normalization | max abs prob diff | max abs log-prob diff | "
              "top-1 agreement % |\n|---|---|---|---|")
        print("\n".join(rows))
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
