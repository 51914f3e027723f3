"""``volo::outlook_attention`` as a PyTorch op: the ``fused`` form, its CUDA registration (the wiring
to our kernel's launcher, checked here without a GPU), ``torch.compile`` treating it as one opaque
node, and the torch backend's device/precision options."""

from __future__ import annotations

import pytest
import torch

from volo_deploy.backends.base import ExportRequest
from volo_deploy.backends.torch_backend import TorchBackend, TorchOptions, resolve_device
from volo_deploy.errors import BackendUnavailable, BadInputError
from volo_deploy.models import create_model, set_outlook_form
from volo_deploy.models import outlook_onnx
from volo_deploy.models.outlook import OutlookParams, outlook_core_reference
from volo_deploy import plugins_native


def _core_inputs(b=2, hh=28, ww=28, heads=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(b, hh, ww, heads * 32, generator=g, dtype=dtype)
    attn = torch.randn(b, -(-hh // 2), -(-ww // 2), heads * 81, generator=g, dtype=dtype)
    return v, attn, OutlookParams(3, 1, 2, heads, 32**-0.5)


def test_fused_form_on_cpu_matches_reference() -> None:
    torch.manual_seed(0)
    model = create_model("volo_demo_64").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        out = set_outlook_form(model, "fused")(x)
    assert all(m.form == "fused" for m in model.modules() if hasattr(m, "form"))
    assert torch.allclose(out, ref, atol=1e-5), (out - ref).abs().max()


def test_op_output_is_contiguous_like_its_fake_kernel() -> None:
    v, attn, p = _core_inputs(hh=27, ww=26)
    out = torch.ops.volo.outlook_attention(v, attn, 3, 1, 2, p.num_heads, p.scale)
    assert out.is_contiguous() and out.shape == v.shape
    assert torch.allclose(out, outlook_core_reference(v, attn, p), atol=1e-5)
    torch.library.opcheck(outlook_onnx._outlook_attention_op, (v, attn, 3, 1, 2, p.num_heads, p.scale),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_keeps_one_opaque_op_per_outlooker() -> None:
    torch.manual_seed(0)
    model = set_outlook_form(create_model("volo_demo_64"), "fused").eval()
    n_outlookers = sum(1 for m in model.modules() if hasattr(m, "form"))
    x = torch.randn(1, 3, 64, 64)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0
    nodes = [n for g in explained.graphs for n in g.graph.nodes if "outlook_attention" in str(n.target)]
    assert len(nodes) == n_outlookers > 0


def test_cuda_kernel_is_registered_for_the_op() -> None:
    assert torch._C._dispatch_has_kernel_for_dispatch_key("volo::outlook_attention", "CUDA")


class _FakeKernel:
    """Stands in for the ctypes launcher: records what the CUDA impl hands it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def outlook_attention(self, v, attn, params, stream=None, out=None):  # noqa: ANN001
        self.calls.append((v, attn, params))
        return outlook_core_reference(v, attn, params)


def test_cuda_impl_hands_contiguous_tensors_and_params_to_the_launcher(monkeypatch) -> None:
    fake, archs = _FakeKernel(), []
    monkeypatch.setattr(plugins_native, "default_kernel", lambda arch: archs.append(arch) or fake)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    v, attn, p = _core_inputs(dtype=torch.float16)
    v_nc = v.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)  # same values, not contiguous
    out = outlook_onnx._outlook_attention_cuda(v_nc, attn, 3, 1, 2, p.num_heads, p.scale)
    assert archs == ["90"] and len(fake.calls) == 1
    got_v, got_attn, got_p = fake.calls[0]
    assert got_v.is_contiguous() and got_attn.is_contiguous() and got_v.dtype == torch.float16
    assert got_p == p
    assert torch.equal(out, outlook_core_reference(v, attn, p))
    # bf16 is not a kernel type: the slice decomposition runs, the launcher is not called.
    outlook_onnx._outlook_attention_cuda(v.bfloat16(), attn.bfloat16(), 3, 1, 2, p.num_heads, p.scale)
    assert len(fake.calls) == 1


def test_default_kernel_uses_env_path_or_user_cache(monkeypatch, tmp_path) -> None:
    plugins_native.default_kernel.cache_clear()
    monkeypatch.setenv(plugins_native.KERNEL_LIB_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(FileNotFoundError, match="missing.so"):
        plugins_native.default_kernel("90")
    plugins_native.default_kernel.cache_clear()
    monkeypatch.delenv(plugins_native.KERNEL_LIB_ENV)
    monkeypatch.delenv("VOLO_DEPLOY_CACHE", raising=False)  # the suite's isolated cache would take precedence
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = []

    def fake_build(build_dir, archs=None, **_):  # noqa: ANN001, ANN202
        built.append((build_dir, archs))
        raise plugins_native.NativeBuildError("no nvcc in this test")

    monkeypatch.setattr(plugins_native, "build_kernel_library", fake_build)
    with pytest.raises(plugins_native.NativeBuildError):
        plugins_native.default_kernel("87")
    assert built == [(tmp_path / "volo_deploy" / "outlook_kernel" / "sm_87", "87")]
    plugins_native.default_kernel.cache_clear()


def test_torch_backend_devices_and_precisions(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(BackendUnavailable, match="cuda"):
        resolve_device("cuda")
    with pytest.raises(BadInputError):
        resolve_device("tpu")
    backend = TorchBackend()
    assert backend.precisions == ("fp32", "fp16")
    with pytest.raises(BackendUnavailable, match="fp16"):
        backend.check_request(ExportRequest(output_dir=tmp_path, precision="fp16"))
    backend.check_request(ExportRequest(output_dir=tmp_path, precision="fp32"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    backend.check_request(ExportRequest(output_dir=tmp_path, precision="fp16", options=TorchOptions("auto")))
    with pytest.raises(BackendUnavailable):
        backend.check_request(ExportRequest(output_dir=tmp_path, precision="fp16", options=TorchOptions("cpu")))


def test_torch_backend_export_and_load_fused_on_cpu(monkeypatch, tmp_path) -> None:
    from volo_deploy.jobs.export import export_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    opts = TorchOptions(device="auto", form="fused")
    result = export_model("torch", ExportRequest(output_dir=tmp_path / "t", options=opts), model_name="volo_demo_64")
    runner = TorchBackend().load(result.model_file, opts)
    assert runner.device.type == "cpu" and runner.dtype == torch.float32
    assert all(m.form == "fused" for m in runner.model.modules() if hasattr(m, "form"))
    x = torch.randn(2, 3, 64, 64).numpy()
    ref = TorchBackend().load(result.model_file, TorchOptions(device="cpu")).run(x)
    assert abs(runner.run(x) - ref).max() < 1e-4
