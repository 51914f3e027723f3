"""A precision means what it says on every CPU.

Configuration tests run for both kinds of CPU (``volo_deploy.machine.cpu_features`` patched:
an AVX-512 VNNI + bf16 server and an AVX2-only CPU): what is handed to OpenVINO's
``compile_model``, the onnxruntime session entries, the quantizer's weight bits. Number tests
run on this machine: FP32 within 1e-4 of PyTorch, bf16 only where the CPU has it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from volo_deploy import machine  # noqa: E402
from volo_deploy.backends import ExportRequest  # noqa: E402
from volo_deploy.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from volo_deploy.backends.openvino_backend import OpenVinoBackend, OvOptions, executed_precision  # noqa: E402
from volo_deploy.errors import BackendUnavailable, BadInputError  # noqa: E402
from volo_deploy.export.validate import torch_logits  # noqa: E402
from volo_deploy.jobs.export import export_model  # noqa: E402
from volo_deploy.runtime import BF16_FASTMATH, EXACT_MATH_ENTRIES, session_options  # noqa: E402

FP32_ATOL = 1e-4
ZEN4 = frozenset({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma", "f16c"})
ARM_BF16 = frozenset({"asimd", "asimddp", "bf16", "i8mm"})
ARM_PLAIN = frozenset({"asimd"})


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(features, arch)``: make this process believe it runs on that CPU."""

    def use(features: frozenset[str], arch: str = "x86_64") -> None:
        monkeypatch.setattr(machine, "cpu_features", lambda: features)
        monkeypatch.setattr("platform.machine", lambda: arch)

    return use


@pytest.fixture(scope="module")
def demo():
    """(model, 16 demo val images, FP32 PyTorch logits)."""
    from volo_deploy.models import load_model
    from volo_deploy.quant.data import eval_set

    model, _ = load_model()
    x = eval_set(model.cfg).x[:16]
    return model, x, torch_logits(model, x)


@pytest.fixture(scope="module")
def ov_exports(tmp_path_factory):
    """Demo OpenVINO exports at fp32 (and bf16 where this CPU has it), dynamic batch, in the
    folders volo-bench reuses (``<root>/openvino_<precision>``); ``out["root"]`` is the root."""
    root = tmp_path_factory.mktemp("artifacts")
    out = {"root": root}
    for precision in ("fp32", "bf16") if machine.has_bf16() else ("fp32",):
        out[precision] = export_model(
            "openvino",
            ExportRequest(output_dir=root / f"openvino_{precision}", precision=precision, dynamic_batch=True),
        )
    return out


# --- OpenVINO: what compile_model gets ---------------------------------------------------------


@pytest.fixture
def compile_calls(monkeypatch):
    """Every ``compile_model`` config of ``openvino.Core`` objects made during the test."""
    import openvino as ov

    calls: list[dict] = []

    class SpyCore(ov.Core):
        def compile_model(self, model, device_name="CPU", config=None):
            calls.append(dict(config or {}))
            return super().compile_model(model, device_name, config or {})

    monkeypatch.setattr(ov, "Core", SpyCore)
    return calls


@pytest.mark.parametrize("features", [ZEN4, AVX2], ids=["vnni_bf16", "avx2"])
def test_every_openvino_compile_pins_f32(features, cpu, compile_calls, ov_exports, demo):
    """Runner, quantizer evaluation and NNCF evaluation all hand OpenVINO an explicit f32 hint."""
    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.quant.evaluate import make_predict
    from volo_deploy.quant.nncf_openvino import fp32_ov_model, ov_logits

    cpu(features)
    model, x, ref = demo
    runner = OpenVinoBackend().load(ov_exports["fp32"].model_file)
    proto = to_onnx_proto(model, batch=1)
    got = {
        "runner": runner.run(x[:4]),
        "evaluate": make_predict(proto, "openvino")(x[:4]),
        "nncf": ov_logits(fp32_ov_model(proto), x[:4], desc=None),
    }
    assert len(compile_calls) == 3
    assert all(c["INFERENCE_PRECISION_HINT"] == "f32" for c in compile_calls)
    assert runner.executed_precision == "fp32"
    for what, logits in got.items():
        assert np.abs(logits - ref[:4]).max() <= FP32_ATOL, what


@pytest.mark.parametrize(
    ("precision", "hint"), [("fp32", "f32"), ("fp16", "f32"), ("bf16", "bf16"), ("int8", "f32")]
)
def test_compile_config_per_precision(precision, hint):
    cfg = OvOptions(hint="throughput", threads=2).compile_config(precision)
    assert cfg == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": "2", "INFERENCE_PRECISION_HINT": hint}


class _Compiled:
    def __init__(self, hint: str) -> None:
        self.hint = hint

    def get_property(self, name: str):
        import openvino as ov

        assert name == "INFERENCE_PRECISION_HINT"
        return {"f32": ov.Type.f32, "bf16": ov.Type.bf16}[self.hint]


def test_executed_precision_is_read_back_and_a_mismatch_refused():
    assert executed_precision(_Compiled("f32"), "fp32", "m") == "fp32"
    assert executed_precision(_Compiled("f32"), "fp16", "m") == "fp32"  # FP16 weights, FP32 math
    assert executed_precision(_Compiled("f32"), "int8", "m") == "int8+fp32"
    assert executed_precision(_Compiled("bf16"), "bf16", "m") == "bf16"
    with pytest.raises(BackendUnavailable, match="fp32 needs INFERENCE_PRECISION_HINT f32, the compiled model runs bf16"):
        executed_precision(_Compiled("bf16"), "fp32", "m")
    with pytest.raises(BackendUnavailable, match="bf16 needs .* bf16, the compiled model runs f32"):
        executed_precision(_Compiled("f32"), "bf16", "m")


# --- numbers on this machine -------------------------------------------------------------------


def test_fp32_ir_is_fp32_here(ov_exports, demo):
    res = ov_exports["fp32"]
    manifest = json.loads(res.manifest.read_text())
    assert (manifest["precision"], manifest["executed_precision"]) == ("fp32", "fp32")
    assert manifest["export"]["inference_precision_hint"] == "f32"
    assert manifest["validation"]["max_abs"] <= FP32_ATOL
    _, x, ref = demo
    runner = OpenVinoBackend().load(res.model_file)
    assert runner.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    assert np.abs(runner.run(x) - ref).max() <= FP32_ATOL


@pytest.mark.skipif(not machine.has_bf16(), reason="this CPU has no native bf16")
def test_bf16_ir_runs_bf16_here(ov_exports, demo):
    from volo_deploy.export.validate import DEFAULT_TOLERANCES

    res = ov_exports["bf16"]
    manifest = json.loads(res.manifest.read_text())
    assert (manifest["precision"], manifest["executed_precision"]) == ("bf16", "bf16")
    assert res.model_file.name.endswith("_bf16.xml")
    _, x, ref = demo
    runner = OpenVinoBackend().load(res.model_file)  # the IR says bf16: compiled as bf16 without options
    assert runner.executed_precision == "bf16"
    err = np.abs(runner.run(x) - ref).max()
    assert FP32_ATOL < err <= DEFAULT_TOLERANCES["bf16"].max_rel * np.abs(ref).max()  # really bf16, within limits
    fp32 = OpenVinoBackend().load(res.model_file, OvOptions(precision="fp32"))  # the same IR, pinned f32
    assert np.abs(fp32.run(x) - ref).max() <= FP32_ATOL


def test_bench_rows_record_what_ran(ov_exports, demo):
    """volo-bench rows: fp32 within 1e-4 of PyTorch and executed as fp32; a bf16 row where the CPU has it."""
    from volo_deploy import artifacts
    from volo_deploy.harness.runner import OK, UNAVAILABLE, CaseContext, run_case
    from volo_deploy.models import demo_checkpoint

    _, x, ref = demo
    ckpt = demo_checkpoint()
    ctx = CaseContext(
        checkpoint=ckpt, checkpoint_sha256=artifacts.sha256_file(ckpt), model_name=None, x=x, labels=None,
        ref_logits=ref, ref_top1_pct=None, batch_sizes=(4,), warmup=0, iters=1, threads=1,
        artifacts_root=ov_exports["root"], progress=False,
    )
    fp32 = run_case("openvino", "fp32", ctx)
    assert (fp32.status, fp32.executed_precision, fp32.artifact["reused"]) == (OK, "fp32", True)
    assert fp32.agreement["max_abs"] <= FP32_ATOL
    bf16 = run_case("openvino", "bf16", ctx)
    if machine.has_bf16():
        assert (bf16.status, bf16.executed_precision) == (OK, "bf16")
        assert bf16.agreement["max_abs"] > FP32_ATOL and bf16.agreement["top1_agreement_pct"] >= 90
    else:
        assert bf16.status == UNAVAILABLE and "no native bf16" in bf16.reason


def test_bf16_unavailable_without_cpu_support(cpu, tmp_path, capsys):
    from volo_deploy.cli.export import main as export_cli
    from volo_deploy.harness.runner import UNAVAILABLE, run_case

    cpu(AVX2)
    reason = OpenVinoBackend.precision_unavailable_reason("bf16")
    assert "no native bf16" in reason and "avx512_bf16" in reason
    with pytest.raises(BackendUnavailable, match="openvino: bf16 unavailable here: this CPU has no native bf16"):
        export_model("openvino", ExportRequest(output_dir=tmp_path / "o", precision="bf16"))
    assert export_cli(["--backend", "openvino", "--bf16", "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no native bf16" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
    res = run_case("openvino", "bf16", ctx=None)  # decided before any export: no context needed
    assert (res.status, res.reason) == (UNAVAILABLE, reason)
    cpu(ZEN4)
    assert OpenVinoBackend.precision_unavailable_reason("bf16") is None


def test_bench_lists_bf16_for_openvino():
    from volo_deploy.harness.bench import BenchConfig, resolve_cases

    cases = resolve_cases(BenchConfig(backends=("openvino", "onnxruntime")))
    assert ("openvino", "bf16") in cases and ("onnxruntime", "bf16") in cases
    assert resolve_cases(BenchConfig(backends=("openvino",), precisions=("bf16",))) == [("openvino", "bf16")]


# --- onnxruntime: session entries --------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_ort_exact_math_entries_pinned(precision):
    so = session_options(precision, threads=1)
    assert {k: so.get_session_config_entry(k) for k in EXACT_MATH_ENTRIES} == EXACT_MATH_ENTRIES
    assert so.intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("features", "arch", "available"),
    [(ZEN4, "x86_64", False), (AVX2, "x86_64", False), (ARM_BF16, "aarch64", True), (ARM_PLAIN, "aarch64", False)],
    ids=["zen4", "avx2", "arm_bf16", "arm_plain"],
)
def test_ort_bf16_only_on_arm64_with_bf16(features, arch, available, cpu):
    cpu(features, arch)
    reason = OnnxRuntimeBackend.precision_unavailable_reason("bf16")
    assert (reason is None) == available
    if arch == "x86_64":
        assert "no bf16 kernels on x86" in reason
    elif not available:
        assert "no native bf16" in reason
    assert session_options("bf16").get_session_config_entry(BF16_FASTMATH) == "1"
    assert session_options("fp32").get_session_config_entry(BF16_FASTMATH) == "0"


def test_ort_runner_reports_fp32(tmp_path, demo):
    from volo_deploy.harness.runner import UNAVAILABLE, run_case

    res = export_model("onnxruntime", ExportRequest(output_dir=tmp_path, dynamic_batch=True))
    assert res.executed_precision == "fp32"
    runner = OnnxRuntimeBackend().load(res.model_file)
    opts = runner.session.get_session_options()
    assert {k: opts.get_session_config_entry(k) for k in EXACT_MATH_ENTRIES} == EXACT_MATH_ENTRIES
    _, x, ref = demo
    assert np.abs(runner.run(x) - ref).max() <= FP32_ATOL
    if not OnnxRuntimeBackend.precision_unavailable_reason("bf16"):
        pytest.skip("ARM64 with bf16: the bf16 row is available here")
    assert run_case("onnxruntime", "bf16", ctx=None).status == UNAVAILABLE


# --- INT8 weight bits by ISA -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "requested", "bits"),
    [(ZEN4, "auto", 8), (AVX2, "auto", 7), (ARM_BF16, "auto", 8), (ZEN4, "7", 7), (AVX2, "8", 8)],
)
def test_weight_bits_by_isa(features, requested, bits, cpu):
    from volo_deploy.quant.profiles import choose_weight_bits, get_profile

    cpu(features)
    for profile in ("onnxruntime", "openvino"):
        got, why = choose_weight_bits(get_profile(profile), requested)
        assert got == bits and why
    assert choose_weight_bits(get_profile("tensorrt"))[0] == 8  # a GPU profile: never by the CPU
    with pytest.raises(BadInputError, match="expected one of auto, 7, 8"):
        choose_weight_bits(get_profile("openvino"), "6")


@pytest.mark.parametrize(("features", "bits"), [(ZEN4, 8), (AVX2, 7)], ids=["vnni", "avx2"])
def test_quantizer_weights_follow_the_isa(features, bits, cpu, demo, tmp_path):
    """The Q/DQ graph holds 7-bit weights (|q| <= 64) without VNNI and full-range ones (127) with it;
    an 8-bit model loaded on a CPU without VNNI is flagged."""
    import onnx
    from onnx import TensorProto, numpy_helper

    from volo_deploy.export.onnx_graph import to_onnx_proto
    from volo_deploy.quant.quantizer import quantize_onnx

    cpu(features)
    model, x, _ = demo
    r = quantize_onnx(to_onnx_proto(model, batch=1), x, profile="onnxruntime")
    assert (r.weight_bits, r.details()["weight_bits"]) == (bits, bits)
    meta = {m.key: m.value for m in r.proto.metadata_props}
    assert meta["volo.quant.weight_bits"] == str(bits)
    weights = [numpy_helper.to_array(t) for t in r.proto.graph.initializer if t.data_type == TensorProto.INT8 and t.dims]
    peak = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert peak == (64 if bits == 7 else 127)
    onnx.save_model(r.proto, str(tmp_path / "int8.onnx"))
    assert OnnxRuntimeBackend().load(tmp_path / "int8.onnx").executed_precision == "int8+fp32"
    cpu(AVX2)
    warning = OnnxRuntimeBackend().load(tmp_path / "int8.onnx").warning
    assert (warning is not None) == (bits == 8) and (warning is None or "--int8-weight-bits 7" in warning)


def test_cli_weight_bits_flag():
    from volo_deploy.cli.export import build_parser
    from volo_deploy.cli.options import options_from_args
    from volo_deploy.quant.options import Int8Options

    args = build_parser().parse_args(["--int8", "--int8-weight-bits", "7"])
    assert options_from_args(Int8Options, args).weight_bits == "7"
    assert options_from_args(Int8Options, build_parser().parse_args(["--int8"])).weight_bits == "auto"
