"""PyTorch VOLO -> portable ONNX (no Col2Im, one ``volo.OutlookAttention`` node per block)."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from pathlib import Path

import torch

from volo_deploy.errors import ExportError
from volo_deploy.models import outlook_onnx
from volo_deploy.models.layers import set_export_friendly
from volo_deploy.models.volo import VOLO

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MIN_OPSET = 17
DEFAULT_OPSET = 18


_CACHE: dict[tuple, object] = {}
_CACHE_MAX_PARAMS = 100_000_000  # keep at most one small-to-mid model's graph in memory


def weights_digest(model: VOLO) -> str:
    """sha1 of every tensor of ``model``'s state dict (identifies the numbers, not the object)."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def to_onnx_proto(model: VOLO, batch: int = 1, dynamic_batch: bool = False, opset: int = DEFAULT_OPSET, form: str = "slice"):
    """Export ``model`` to an in-memory ``onnx.ModelProto`` (FP32, NCHW input).

    The dynamo export is the slow step of every backend; the last graph is kept (keyed by
    the weights and arguments) so exporting one model to several backends exports once.
    A fresh copy is returned each time.
    """
    import onnx

    small = sum(p.numel() for p in model.parameters()) <= _CACHE_MAX_PARAMS
    key = (weights_digest(model), model.cfg, batch, dynamic_batch, opset, form) if small else None
    if key is not None and key in _CACHE:
        copy = onnx.ModelProto()
        copy.CopyFrom(_CACHE[key])
        return copy
    proto = _export_proto(model, batch, dynamic_batch, opset, form)
    if key is not None:
        _CACHE.clear()
        _CACHE[key] = proto
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        return copy
    return proto


def _export_proto(model: VOLO, batch: int, dynamic_batch: bool, opset: int, form: str):
    import onnx

    if opset < MIN_OPSET:
        raise ExportError(f"--opset must be >= {MIN_OPSET} (LayerNormalization), got {opset}")
    cfg = model.cfg
    x = torch.randn(max(batch, 2) if dynamic_batch else batch, 3, cfg.img_size, cfg.img_size)
    dyn = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    model = model.eval()
    with outlook_onnx.as_onnx_nodes(model) as params, export_friendly(model), torch.no_grad():
        distinct = set(params)
        if len(distinct) > 1:
            raise ExportError(f"outlook blocks with different attributes are not supported: {sorted(map(str, distinct))}")
        with outlook_onnx.quiet_torch_export():
            prog = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dyn,
                custom_translation_table=outlook_onnx.translation_table(),
                verbose=False,
            )
    proto = prog.model_proto
    if not dynamic_batch:
        _fix_batch(proto, batch)
    if params:
        grid = cfg.img_size // cfg.patch_size
        fn = outlook_onnx.function_proto(params[0], (batch, grid, grid, cfg.embed_dims[0]), opset, form)
        proto.functions.append(fn)
        if not any(o.domain == outlook_onnx.DOMAIN for o in proto.opset_import):
            proto.opset_import.append(onnx.helper.make_opsetid(outlook_onnx.DOMAIN, outlook_onnx.OP_VERSION))
    _drop_stack_traces(proto)
    return proto


# Per-node Python stack traces name this checkout's absolute file paths: they would make the graph (and every
# hash of it: artifact reuse, the calibration cache key) differ between two checkouts of the same code. The
# other per-node metadata (module scopes, which INT8 placement reads) is kept.
_STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"


def _drop_stack_traces(proto) -> None:
    nodes = list(proto.graph.node) + [n for fn in proto.functions for n in fn.node]
    for node in nodes:
        keep = [p for p in node.metadata_props if p.key != _STACK_TRACE_KEY]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)


@contextlib.contextmanager
def export_friendly(model: VOLO):
    """Temporarily switch the model's layers to their export-friendly (same-numbers) forms."""
    set_export_friendly(model, True)
    try:
        yield model
    finally:
        set_export_friendly(model, False)


def _fix_batch(proto, batch: int) -> None:
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_param") or dim0.dim_value != batch:
            dim0.Clear()
            dim0.dim_value = batch


def op_histogram(proto) -> dict[str, int]:
    """Op-type counts of the main graph plus function bodies (``domain.op`` for custom domains)."""
    counts: Counter[str] = Counter()
    for node in proto.graph.node:
        counts[f"{node.domain}.{node.op_type}" if node.domain else node.op_type] += 1
    for fn in proto.functions:
        for node in fn.node:
            counts[f"{fn.name}/{node.op_type}"] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def inline_functions(proto):
    """The same model with every local function inlined (what OpenVINO needs)."""
    import onnx.inliner

    return onnx.inliner.inline_local_functions(proto)


def onnx_metadata(model: VOLO, request) -> dict[str, str]:
    """``metadata_props`` of our ONNX (and ``rt_info`` of our IRs): preprocessing, provenance, precision."""
    from volo_deploy import __version__

    cfg = model.cfg
    return {
        "volo.variant": cfg.name,
        "volo.input_size": f"3x{cfg.img_size}x{cfg.img_size}",
        "volo.mean": ",".join(f"{m:g}" for m in cfg.mean),
        "volo.std": ",".join(f"{s:g}" for s in cfg.std),
        "volo.crop_pct": f"{cfg.crop_pct:g}",
        "volo.interpolation": "bicubic",
        "volo.num_classes": str(cfg.num_classes),
        "volo.checkpoint_sha256": request.checkpoint_sha256,
        "volo.precision": request.precision,
        "volo_deploy.version": __version__,
    }


def portable_onnx(model: VOLO, request, form: str = "slice") -> tuple[object, dict[str, object]]:
    """The checked portable ONNX for ``request`` (an ``ExportRequest``), with our metadata.

    Returns (``onnx.ModelProto``, manifest details).
    """
    import onnx

    proto = to_onnx_proto(model, request.batch, request.dynamic_batch, request.opset, form=form)
    hist = op_histogram(proto)
    if any(k.endswith("Col2Im") for k in hist):
        raise ExportError("internal: Col2Im found in the exported graph")
    for k, v in onnx_metadata(model, request).items():
        proto.metadata_props.add(key=k, value=v)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {exc}") from None
    return proto, {"op_histogram": hist, "outlook_form": form, "outlook_nodes": hist.get("volo.OutlookAttention", 0)}


def write_portable_onnx(model: VOLO, request, path: Path) -> tuple[object, dict[str, object]]:
    """:func:`portable_onnx` saved to ``path``; returns the graph written and the manifest details."""
    import onnx

    proto, details = portable_onnx(model, request)
    onnx.save_model(proto, str(path))
    return proto, details
