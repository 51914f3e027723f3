"""Torch-TensorRT backend without torch_tensorrt/TensorRT: registration, clear 'unavailable', the
converter's plugin calls (recorded on a stand-in ``tensorrt``), the fallback check, compile settings."""

from __future__ import annotations

import copy
import gc
import importlib.util
import operator
import subprocess
import sys
import types
import weakref

import numpy as np
import pytest
import torch

from volo_deploy.errors import ExportError
from volo_deploy.export import torch_trt_converter as conv

HAS_TORCH_TRT = importlib.util.find_spec("torch_tensorrt") is not None
ATTRS = {"kernel_size": 3, "padding": 1, "stride": 2, "num_heads": 6, "scale": 32**-0.5}


def test_registered_and_import_safe():
    code = ("import sys; import volo_deploy.backends.torch_tensorrt_backend as b; "
            "import volo_deploy.export.torch_trt_converter; "
            "from volo_deploy.backends import get_backend, backend_names; "
            "assert get_backend('torch-tensorrt') is get_backend('torch_tensorrt') is b.TorchTensorRtBackend; "
            "assert 'torch_tensorrt' in backend_names(); "
            "assert 'torch_tensorrt' not in sys.modules and 'tensorrt' not in sys.modules; "
            "print(b.TorchTensorRtBackend.unavailable_reason())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if not HAS_TORCH_TRT:
        assert proc.stdout.strip().startswith("not installed: torch_tensorrt")
        assert "pip install 'volo_deploy[torch_tensorrt]'" in proc.stdout


@pytest.mark.skipif(HAS_TORCH_TRT, reason="torch_tensorrt is installed here")
def test_unavailable_row_and_clear_export_error(tmp_path, capsys):
    from volo_deploy.cli.export import main as export_cli
    from volo_deploy.harness.bench import BenchConfig, resolve_cases
    from volo_deploy.harness.runner import run_case

    assert ("torch_tensorrt", "fp16") in resolve_cases(BenchConfig())  # volo-bench lists it by default
    res = run_case("torch_tensorrt", "fp32", None)  # returns before touching the data
    assert res.status == "unavailable" and res.reason.startswith("not installed: torch_tensorrt")
    assert run_case("torch_tensorrt", "int8", None).status == "unsupported"
    rc = export_cli(["--backend", "torch_tensorrt", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "backend torch_tensorrt: unavailable: not installed: torch_tensorrt" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "manifest.json").exists()
    rc = export_cli(["--backend", "torch_tensorrt", "--max-batch", "4", "--output", str(tmp_path / "out")])
    assert rc == 2 and "--max-batch needs --dynamic-batch" in capsys.readouterr().err


class _Field:
    """Like ``trt.PluginField``: the buffer is referenced by address only (a weak reference here)."""

    def __init__(self, name, data, kind) -> None:
        self.name, self.type, self._data = name, kind, weakref.ref(data)

    @property
    def data(self):  # None once the numpy array is freed
        return self._data()


class _Collection(list):
    """Like ``trt.PluginFieldCollection``: copies of the fields, not the field objects."""

    def __init__(self, fields) -> None:
        super().__init__(copy.copy(f) for f in fields)


class _Recorder:
    """Stand-in ``tensorrt`` module: plugin registry, creator, fields; every call recorded."""

    def __init__(self, has_creator: bool = True) -> None:
        self.calls: list[tuple] = []
        rec = self

        class Creator:
            def create_plugin(self, name, fc, phase):
                rec.calls.append(("create_plugin", name, fc, phase))
                return ("plugin", name)

        class Registry:
            def get_creator(self, name, version, namespace):
                rec.calls.append(("get_creator", name, version, namespace))
                return Creator() if has_creator else None

        self.get_plugin_registry = Registry
        self.PluginField = _Field
        self.PluginFieldCollection = _Collection
        self.PluginFieldType = types.SimpleNamespace(INT32="INT32", FLOAT32="FLOAT32")
        self.TensorRTPhase = types.SimpleNamespace(BUILD="BUILD", RUNTIME="RUNTIME")


class _Network:
    def __init__(self) -> None:
        self.added: list[tuple] = []

    def add_plugin_v3(self, inputs, shape_inputs, plugin):
        layer = types.SimpleNamespace(name=None, get_output=lambda i: ("out", i, plugin))
        self.added.append((list(inputs), list(shape_inputs), plugin, layer))
        return layer


def test_converter_builds_our_plugin_from_the_registry():
    trt, net = _Recorder(), _Network()
    ctx = types.SimpleNamespace(net=net)
    seen = []

    def to_trt(c, value, name):
        assert c is ctx
        seen.append(name)
        return f"trt<{value}>"

    out = conv.convert_outlook(trt, ctx, ("v", "attn", 3, 1, 2), {"num_heads": 6, "scale": ATTRS["scale"]},
                               "outlook_0", to_trt)
    assert seen == ["outlook_0_v", "outlook_0_attn"]
    assert trt.calls[0] == ("get_creator", "OutlookAttention", "1", "volo")
    _, name, fields, phase = trt.calls[1]
    assert (name, phase) == ("outlook_0", "BUILD") and isinstance(fields, _Collection)
    gc.collect()
    by_name = {f.name: f for f in fields}
    assert list(by_name) == ["kernel_size", "padding", "stride", "num_heads", "scale"]
    for k in ("kernel_size", "padding", "stride", "num_heads"):
        f = by_name[k]
        assert f.type == "INT32" and f.data is not None, f"{k}: buffer freed while the collection lives"
        assert f.data.dtype == np.int32 and f.data.tolist() == [ATTRS[k]]
    f = by_name["scale"]
    assert f.type == "FLOAT32" and f.data is not None and f.data.dtype == np.float32
    assert f.data[0] == pytest.approx(ATTRS["scale"])
    ((inputs, shape_inputs, plugin, layer),) = net.added
    assert inputs == ["trt<v>", "trt<attn>"] and shape_inputs == [] and plugin == ("plugin", "outlook_0")
    assert layer.name == "outlook_0" and out == ("out", 0, plugin)


def test_converter_refuses_without_the_plugin_or_with_missing_arguments():
    ctx = types.SimpleNamespace(net=_Network())
    with pytest.raises(ExportError, match="volo::OutlookAttention v1 is not registered"):
        conv.convert_outlook(_Recorder(has_creator=False), ctx, ("v", "a", 3, 1, 2, 6, 0.1), {}, "n", lambda *a: a[1])
    with pytest.raises(ExportError, match="expected 7 arguments, got 5"):
        conv.convert_outlook(_Recorder(), ctx, ("v", "a", 3, 1, 2), {}, "n", lambda *a: a[1])


def _partitioned(with_fallback: str | None) -> torch.fx.GraphModule:
    """Synthetic Torch-TensorRT output: TensorRT submodules '_run_on_acc_N', a torch one '_run_on_gpu_N'."""
    import volo_deploy.models.outlook_onnx  # noqa: F401  (the op)

    class Engine(torch.nn.Module):
        def forward(self, x):
            return x, x

    inner = torch.fx.Graph()
    a, b = inner.placeholder("v"), inner.placeholder("attn")
    inner.output(inner.call_function(torch.ops.volo.outlook_attention.default, (a, b, 3, 1, 2, 2, 0.5)))
    root = torch.nn.Module()
    root.add_module("_run_on_acc_0", Engine())
    root.add_module("_run_on_gpu_1", torch.fx.GraphModule(torch.nn.Module(), inner))
    root.add_module("_run_on_acc_2", Engine())
    g = torch.fx.Graph()
    x = g.placeholder("x")
    pair = g.call_module("_run_on_acc_0", (x,))
    v, attn = g.call_function(operator.getitem, (pair, 0)), g.call_function(operator.getitem, (pair, 1))
    if with_fallback == "submodule":
        v = g.call_module("_run_on_gpu_1", (v, attn))
    elif with_fallback == "function":
        v = g.call_function(torch.add, (v, attn))
    g.output(g.call_module("_run_on_acc_2", (v,)))
    return torch.fx.GraphModule(root, g)


def test_fallback_check_on_a_partitioned_graph():
    conv.check_no_fallback(_partitioned(None))  # engines + getitem only: fine
    with pytest.raises(ExportError, match=r"left 1 node\(s\) to PyTorch.*_run_on_gpu_1 \(GraphModule\): "
                                          r"volo.outlook_attention.default"):
        conv.check_no_fallback(_partitioned("submodule"))
    (left,) = conv.torch_fallbacks(_partitioned("function"))  # a torch op between two engines
    assert left.startswith("call_function") and "add" in left


def test_compile_settings_for_old_and_new_torch_tensorrt():
    from volo_deploy.backends.torch_tensorrt_backend import _compile_kwargs

    def new(ep, *, arg_inputs=None, min_block_size=5, require_full_compilation=False, use_explicit_typing=True,
            disable_tf32=False, pass_through_build_failures=False): ...

    def old(ep, *, inputs=None, enabled_precisions=None, min_block_size=5, pass_through_build_failures=False): ...

    kw = _compile_kwargs(new, "fp32")
    assert kw == {"min_block_size": 1, "pass_through_build_failures": True, "require_full_compilation": True,
                  "use_explicit_typing": True, "disable_tf32": True}
    assert "disable_tf32" not in _compile_kwargs(new, "fp16")
    assert _compile_kwargs(old, "fp16") == {"min_block_size": 1, "pass_through_build_failures": True,
                                            "enabled_precisions": {torch.float16}}


def test_compile_settings_without_precision_flags_on_2_13():
    """2.13+ compile has neither use_explicit_typing nor enabled_precisions (always strongly typed)."""
    from volo_deploy.backends.torch_tensorrt_backend import _compile_kwargs

    def v213(ep, *, arg_inputs=None, min_block_size=5, require_full_compilation=False, disable_tf32=False,
             pass_through_build_failures=False, **kwargs): ...

    kw = _compile_kwargs(v213, "fp16")
    assert "enabled_precisions" not in kw and "use_explicit_typing" not in kw


# ``torch_tensorrt.save`` keyword-only parameters of 2.9, 2.10 and 2.12-2.14 (read from the wheels).
def _save_29(module, file_path="", *, output_format="exported_program", inputs=None, arg_inputs=None,
             kwarg_inputs=None, retrace=False, pickle_protocol=2, **kwargs): ...


def _save_210(module, file_path="", *, output_format="exported_program", inputs=None, arg_inputs=None,
              kwarg_inputs=None, retrace=True, pickle_protocol=2, **kwargs): ...


def _save_214(module, file_path="", *, extra_files=None, output_format="exported_program", inputs=None,
              arg_inputs=None, kwarg_inputs=None, retrace=True, use_legacy_exporter=None, pickle_protocol=2,
              dynamic_shapes=None, **kwargs): ...


def test_save_keeps_the_dynamic_batch_on_every_version():
    """2.10+ re-traces on save by default: a dynamic program must get dynamic_shapes (2.12+) or retrace=False."""
    from volo_deploy.backends.torch_tensorrt_backend import save_kwargs

    x = torch.zeros(2, 3, 8, 8)
    kw = save_kwargs(_save_214, x, True, 16)
    (spec,) = kw["dynamic_shapes"]
    assert kw["arg_inputs"] == [x] and spec[0].min == 1 and spec[0].max == 16
    for fn in (_save_29, _save_210):  # the compiled graph serialized as it is (no example input needed)
        assert save_kwargs(fn, x, True, 16) == {"output_format": "exported_program", "retrace": False}
    for fn in (_save_29, _save_210, _save_214):  # a fixed batch is traced at its own batch
        assert save_kwargs(fn, x, False, 16) == {"output_format": "exported_program", "arg_inputs": [x]}


def test_op_form_gives_one_op_call_per_outlooker():
    """What Torch-TensorRT receives: the exported program has one volo::outlook_attention per outlook block."""
    from volo_deploy.backends.torch_tensorrt_backend import op_form, program_input
    from volo_deploy.models import create_model, set_outlook_form
    from volo_deploy.models.outlook import OutlookAttention

    model = set_outlook_form(create_model("volo_demo_64").eval(), op_form())
    x = torch.randn(2, 3, 64, 64)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=32)},))
    op = torch.ops.volo.outlook_attention.default
    calls = [n for n in ep.graph.nodes if n.op == "call_function" and n.target is op]
    assert len(calls) == sum(isinstance(m, OutlookAttention) for m in model.modules()) == 2
    p = next(m for m in model.modules() if isinstance(m, OutlookAttention)).params
    assert calls[0].args[2:] == (p.kernel_size, p.padding, p.stride, p.num_heads, p.scale)
    assert program_input(ep) == ((None, 3, 64, 64), torch.float32)
    fixed = torch.export.export(model, (x,))
    assert program_input(fixed) == ((2, 3, 64, 64), torch.float32)


def test_fp16_model_keeps_norms_and_heads_fp32():
    """What FP16 compiles: half everywhere but LayerNorm and the heads; close to FP32 PyTorch on digits."""
    import copy

    from volo_deploy.backends.torch_tensorrt_backend import half_keeping_norms_fp32, op_form
    from volo_deploy.data.samples import validation_batch
    from volo_deploy.export.validate import compare_logits, torch_logits
    from volo_deploy.models import load_model, set_outlook_form

    model, _ = load_model()
    net = half_keeping_norms_fp32(set_outlook_form(copy.deepcopy(model), op_form()))
    kept = {n for n, m in net.named_modules() if isinstance(m, torch.nn.LayerNorm)} | {"head", "aux_head"}
    for name, p in net.named_parameters():
        want = torch.float32 if name.rsplit(".", 1)[0] in kept else torch.float16
        assert p.dtype == want, name
    x = validation_batch(model.cfg, None, n=8)
    with torch.no_grad():
        out = net(torch.from_numpy(x).half())
    assert out.dtype == torch.float32  # the FP32 head
    s = compare_logits(torch_logits(model, x), out.numpy())
    assert 0 < s.max_abs and s.max_rel < 1e-2 and s.top1_agreement == 1.0
    ep = torch.export.export(net, (torch.from_numpy(x[:2]).half(),))
    norms = [n for n in ep.graph.nodes if n.op == "call_function" and "layer_norm" in str(n.target)]
    assert norms and all(n.args[0].meta["val"].dtype == torch.float32 for n in norms)


def _usable() -> str | None:
    from volo_deploy.backends.torch_tensorrt_backend import TorchTensorRtBackend

    return TorchTensorRtBackend.unavailable_reason()


@pytest.mark.trt
@pytest.mark.skipif(_usable() is not None, reason=f"needs torch_tensorrt, TensorRT and a GPU: {_usable()}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_compile_save_load_demo(tmp_path, precision):
    """Full path on a GPU host: plugin build/load, compile without fallback, save, reload, validation in the export."""
    import json

    from volo_deploy.backends import ExportRequest
    from volo_deploy.backends.torch_tensorrt_backend import TorchTensorRtBackend, TorchTrtOptions
    from volo_deploy.jobs.export import export_model

    req = ExportRequest(output_dir=tmp_path, precision=precision, dynamic_batch=True,
                        options=TorchTrtOptions(max_batch=8))
    res = export_model("torch_tensorrt", req)
    manifest = json.loads(res.manifest.read_text())
    assert manifest["export"]["torch_fallback_nodes"] == 0 and manifest["export"]["trt_submodules"]
    assert {"volo_demo_64_" + precision + ".ep", "libvolo_outlook_plugin.so"} <= {f["path"] for f in manifest["files"]}
    runner = TorchTensorRtBackend().load(res.model_file)
    out = runner.run(np.zeros((3, 3, 64, 64), np.float32))
    assert out.shape == (3, 10) and out.dtype == np.float32
