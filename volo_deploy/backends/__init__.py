"""Deployment backends: one registered class each (see :mod:`volo_deploy.backends.base`)."""

from volo_deploy.backends.base import (
    Backend,
    ExportArtifacts,
    ExportRequest,
    ExportResult,
    Runner,
    Skip,
    Validate,
    backend_help,
    backend_names,
    get_backend,
    register_backend,
)

__all__ = ["Backend", "ExportArtifacts", "ExportRequest", "ExportResult", "Runner", "Skip", "Validate", "backend_help",
           "backend_names", "get_backend", "register_backend"]
