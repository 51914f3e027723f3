"""Run an in-memory ONNX model on onnxruntime or OpenVINO CPU and score top-1.

Both runtimes compute the float parts in FP32 on every CPU (OpenVINO's default would be bf16
on CPUs with avx512_bf16/AMX), as the exported artifacts do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from volo_deploy.runtime import run_in_chunks
from volo_deploy.errors import QuantizationError

RUNTIMES = ("onnxruntime", "openvino")
Predict = Callable[[np.ndarray], np.ndarray]


def _input(proto) -> tuple[str, int | None]:
    inp = proto.graph.input[0]
    d0 = inp.type.tensor_type.shape.dim[0]
    return inp.name, (d0.dim_value if d0.HasField("dim_value") else None)


def make_predict(proto, runtime: str = "onnxruntime", threads: int | None = None) -> Predict:
    """A function images -> logits for ``proto`` on ``runtime`` (OpenVINO gets functions inlined)."""
    import onnx

    name, batch = _input(proto)
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from volo_deploy.runtime import session_options

        so = session_options("fp32", threads, log_severity=3)  # int8 models: their float parts in fp32
        try:
            sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise QuantizationError(f"onnxruntime cannot load the model: {exc}") from None

        def run(x: np.ndarray) -> np.ndarray:
            return sess.run(None, {name: x})[0]

    elif runtime == "openvino":
        import openvino as ov

        if len(proto.functions):
            from volo_deploy.export.onnx_graph import inline_functions

            proto = inline_functions(proto)
        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="volo-ov-") as tmp:
            path = Path(tmp) / "m.onnx"
            onnx.save_model(proto, str(path))
            from volo_deploy.runtime import inference_config

            cfg = {**inference_config("fp32"), **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
            try:
                compiled = core.compile_model(core.read_model(str(path)), "CPU", cfg)
            except RuntimeError as exc:
                raise QuantizationError(f"OpenVINO cannot compile the model: {str(exc)[:400]}") from None
        req = compiled.create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            return np.array(req.infer({0: x})[compiled.output(0)])

    else:
        raise QuantizationError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")

    def predict(x: np.ndarray) -> np.ndarray:
        return run_in_chunks(run, np.ascontiguousarray(x, np.float32), batch or 32, pad=bool(batch))

    return predict


def logits(proto, x: np.ndarray, runtime: str = "onnxruntime", desc: str = "eval", chunk: int = 64) -> np.ndarray:
    """Logits of ``x`` with a progress bar."""
    from tqdm.auto import tqdm

    predict = make_predict(proto, runtime)
    out = [predict(x[i : i + chunk]) for i in tqdm(range(0, len(x), chunk), desc=desc, unit="chunk", leave=False)]
    return np.concatenate(out)


def top1(logit: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((logit.argmax(1) == labels).mean() * 100.0)


def agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Top-1 agreement of ``got`` with ``ref`` in percent (the export validation's statistic)."""
    from volo_deploy.export.validate import compare_logits

    return compare_logits(ref, got).top1_agreement * 100.0


def cosine(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(mean, min) cosine similarity of ``got``'s logits with ``ref``'s, image by image."""
    from volo_deploy.export.validate import compare_logits

    stats = compare_logits(ref, got)
    return stats.cosine_mean, stats.cosine_min
