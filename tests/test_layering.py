"""Backends without argparse, the registry as the one list, each export artifact made once."""

from __future__ import annotations

import dataclasses
import os

import onnx
import pytest

from volo_deploy.backends import backend_help, backend_names, get_backend
from volo_deploy.backends.base import backend_modules, library_distributions
from volo_deploy.cli.export import build_parser
from volo_deploy.cli.options import cli_fields, options_from_args


def _parse(backend: str, argv: list[str]):
    cls = get_backend(backend)
    return options_from_args(cls.Options, build_parser(cls).parse_args(["--backend", backend, *argv]))


def test_backends_have_no_argparse_methods():
    for name in backend_names():
        cls = get_backend(name)
        assert not hasattr(cls, "add_arguments") and not hasattr(cls, "options_from_args"), name


def test_option_flags_come_from_the_dataclass():
    from volo_deploy.backends.openvino_backend import OvOptions
    from volo_deploy.backends.tensorrt_backend import TrtOptions

    got = _parse("trt", ["--emit-only", "--target-trt", "10.3", "--workspace", "64", "--dynamic-batch",
                         "--min-batch", "2"])
    assert got == TrtOptions(emit_only=True, target_trt="10.3", workspace_mib=64, min_batch=2)
    assert _parse("trt", []) == TrtOptions()
    assert _parse("ov", ["--outlook-form", "conv", "--threads", "2"]) == OvOptions(outlook_form="conv", threads=2)
    assert [fl.name for _, fl in cli_fields(OvOptions)] == ["--device", "--hint", "--streams", "--threads",
                                                            "--outlook-form"]


@pytest.mark.parametrize("argv", [["--workspace", "0"], ["--min-batch", "x"]])
def test_option_parsers_refuse_bad_values(argv, capsys):
    with pytest.raises(SystemExit):
        _parse("trt", argv)
    assert "expected a positive integer" in capsys.readouterr().err


def test_bench_default_options_are_the_dataclass_defaults():
    from volo_deploy.harness.runner import backend_options

    for name in backend_names():
        cls = get_backend(name)
        assert backend_options(cls, None) == cls.Options()
    assert backend_options(get_backend("onnx"), 3).threads == 3
    assert backend_options(get_backend("openvino"), 2).threads == 2
    assert not hasattr(backend_options(get_backend("torch"), 2), "threads")


def test_registry_lists_modules_help_and_versions():
    assert backend_modules()[:5] == ["torch_backend", "onnxruntime_backend", "openvino_backend",
                                     "tensorrt_backend", "torch_tensorrt_backend"]
    help_text = backend_help()
    for name in backend_names():
        assert name in help_text
    assert "trt" in help_text and "onnx" in help_text  # aliases
    assert library_distributions() == ("torch", "onnx", "onnxruntime", "openvino", "nncf", "tensorrt",
                                       "torch-tensorrt")


def _demo_int8(tmp_path):
    from volo_deploy.backends import ExportRequest
    from volo_deploy.quant.options import Int8Options

    return ExportRequest(output_dir=tmp_path / "out", precision="int8", quant=Int8Options(max_drop=None))


def test_openvino_int8_is_built_from_the_exported_form(tmp_path, monkeypatch):
    """``--outlook-form conv --int8``: one export, in the conv form, is what gets quantized."""
    pytest.importorskip("openvino")
    from volo_deploy.backends.openvino_backend import OvOptions
    from volo_deploy.export import onnx_graph
    from volo_deploy.jobs.export import export_model
    from volo_deploy.quant import export as quant_export

    exports, quantized = [], []
    real_export, real_quant = onnx_graph.to_onnx_proto, quant_export.quantize_for_export
    monkeypatch.setattr(onnx_graph, "to_onnx_proto", lambda *a, **k: exports.append(k.get("form")) or
                        real_export(*a, **k))
    monkeypatch.setattr(quant_export, "quantize_for_export", lambda m, r, p, fp32_proto, **k: quantized.append(
        {n.op_type for f in fp32_proto.functions for n in f.node}) or real_quant(m, r, p, fp32_proto, **k))
    request = dataclasses.replace(_demo_int8(tmp_path), options=OvOptions(outlook_form="conv"))
    result = export_model("openvino", request)
    assert exports == ["conv"]
    assert len(quantized) == 1 and "Conv" in quantized[0] and "ConvTranspose" in quantized[0]
    assert result.details["outlook_form"] == "conv"


def test_tensorrt_int8_graph_saved_once(tmp_path, monkeypatch):
    """The INT8 emit-only export keeps its graphs in memory: one ONNX file is written, not reloaded
    (the quantizer's own files, in its temporary folder, are onnxruntime's quantize_static input)."""
    pytest.importorskip("onnxruntime")
    from volo_deploy.backends.tensorrt_backend import TrtOptions
    from volo_deploy.jobs.export import export_model

    saved, loaded = [], []
    real_save, real_load = onnx.save_model, onnx.load
    monkeypatch.setattr(onnx, "save_model", lambda proto, path, *a, **k: saved.append(str(path)) or
                        real_save(proto, path, *a, **k))
    monkeypatch.setattr(onnx, "load", lambda path, *a, **k: loaded.append(str(path)) or real_load(path, *a, **k))
    request = dataclasses.replace(_demo_int8(tmp_path), options=TrtOptions(emit_only=True))
    result = export_model("trt", request)
    ours = str(tmp_path)
    ds = result.model_file.name.replace("_trt.onnx", "_ds_trt.onnx")  # the DeepStream/Triton graph, derived
    assert [p.rsplit("/", 1)[1] for p in saved if p.startswith(ours)] == [result.model_file.name, ds]
    assert all(p.endswith(result.model_file.name) for p in loaded if p.startswith(ours))  # the bundle's I/O types
    assert "skipped" in result.validation


def test_export_job_reads_and_hashes_a_checkpoint_once(tmp_path, monkeypatch, demo_checkpoint) -> None:
    """volo-bench exports one checkpoint per backend x precision: it is loaded and hashed once."""
    from volo_deploy import artifacts
    from volo_deploy.jobs import export as job

    job._load_and_hash.cache_clear()
    loads, hashes = [], []
    real_load, real_hash = job.load_model, artifacts.sha256_file
    monkeypatch.setattr(job, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(artifacts, "sha256_file", lambda p, *a: hashes.append(str(p)) or real_hash(p, *a))
    ckpt = tmp_path / "demo.safetensors"
    ckpt.write_bytes(demo_checkpoint.read_bytes())
    a = job.load_checkpoint_once(ckpt, None, None)
    b = job.load_checkpoint_once(ckpt, None, None)
    assert len(loads) == 1 and hashes.count(str(ckpt)) == 1 and a[2] == b[2]
    assert a[0] is not b[0]  # each export gets its own copy of the model
    os.utime(ckpt, ns=(1, 1))  # rewritten (a new mtime): read again
    job.load_checkpoint_once(ckpt, None, None)
    assert len(loads) == 2
    job._load_and_hash.cache_clear()
