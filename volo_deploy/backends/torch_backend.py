"""PyTorch: FP32 on the CPU is the reference every other backend is compared with; on a CUDA GPU
the same model runs in FP32 or FP16 (``--torch-device``), with the outlook-attention form of choice
(``--torch-form``: ``reference`` = the published unfold/fold code, ``fused`` = our CUDA kernel)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportArtifacts, ExportRequest, Runner, register_backend
from volo_deploy.errors import BackendUnavailable, BadInputError
from volo_deploy.options import flag

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TorchOptions:
    """Where and how the PyTorch model runs."""

    # auto: cuda when torch.cuda.is_available(), else cpu
    device: str = flag("--torch-device", "torch backend device (auto: cuda when available); fp16 needs cuda", "auto",
                       choices=DEVICES)
    # outlook-attention form (volo_deploy.models.outlook.set_outlook_form)
    form: str = flag("--torch-form", "outlook-attention form of the torch backend: reference (timm's code) or fused "
                     "(our CUDA kernel as one op)", "reference")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA GPU is usable, else ``cpu``; ``cuda`` without one is refused."""
    import torch

    if device not in DEVICES:
        raise BadInputError(f"torch device {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("backend torch: unavailable: device cuda requested but torch.cuda.is_available() "
                                 "is False")
    return device


class TorchRunner(Runner):
    def __init__(self, model, device: str = "cpu", precision: str = "fp32") -> None:  # model: VOLO
        import torch

        super().__init__((None, 3, model.cfg.img_size, model.cfg.img_size))
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.device = torch.device(device)
        self.model = model.to(self.device, self.dtype).eval()

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(batch).to(self.device, self.dtype)
            return self.model(x).float().cpu().numpy()


@register_backend("torch", "pytorch")
class TorchBackend(Backend):
    """Eager PyTorch (CPU FP32 reference; CUDA FP32/FP16); artifact = safetensors weights."""

    precisions = ("fp32", "fp16")
    model_suffix = ".safetensors"
    Options = TorchOptions
    distributions = ("torch",)

    def check_request(self, request: ExportRequest) -> None:
        super().check_request(request)
        device = resolve_device((request.options or TorchOptions()).device)
        if request.precision == "fp16" and device != "cuda":
            raise BackendUnavailable("backend torch: unavailable: fp16 runs on CUDA only (torch.cuda.is_available() "
                                     "is False or --torch-device cpu)")

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        from safetensors.torch import save_file

        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        meta = {"variant": model.cfg.name, "precision": request.precision}
        save_file(sd, str(staged / model_file), metadata=meta)
        return ExportArtifacts(details={"format": "safetensors state dict (FP32 weights; precision applied at load)"})

    def load(self, artifact: Path, options: Any = None) -> Runner:
        from safetensors import safe_open

        from volo_deploy.models import load_model, set_outlook_form

        opts = options or TorchOptions()
        with safe_open(str(artifact), framework="pt") as f:
            precision = (f.metadata() or {}).get("precision", "fp32")
        device = resolve_device(opts.device)
        if precision == "fp16" and device != "cuda":
            raise BackendUnavailable(f"backend torch: unavailable: {artifact} is fp16, which runs on CUDA only")
        model, _ = load_model(artifact)
        return TorchRunner(set_outlook_form(model, opts.form), device, precision)
