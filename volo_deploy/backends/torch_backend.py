"""FP32 PyTorch: the reference every other backend is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from volo_deploy.backends.base import Backend, ExportRequest, Runner, register_backend


class TorchRunner(Runner):
    def __init__(self, model) -> None:  # model: VOLO
        super().__init__((None, 3, model.cfg.img_size, model.cfg.img_size))
        self.model = model

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(batch)).numpy()


@register_backend("torch", "pytorch")
class TorchBackend(Backend):
    """Eager PyTorch with the reference outlook attention; artifact = safetensors weights."""

    precisions = ("fp32",)
    model_suffix = ".safetensors"

    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> dict[str, Any]:
        from safetensors.torch import save_file

        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(staged / model_file), metadata={"variant": model.cfg.name})
        return {"format": "safetensors state dict"}

    def load(self, artifact: Path, options: Any = None) -> Runner:
        from volo_deploy.models import load_model

        model, _ = load_model(artifact)
        return TorchRunner(model)
