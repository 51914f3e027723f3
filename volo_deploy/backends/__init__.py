"""Deployment backends: one registered class each (see :mod:`volo_deploy.backends.base`)."""

from volo_deploy.backends.base import Backend, ExportRequest, ExportResult, Runner, backend_names, get_backend, register_backend

__all__ = ["Backend", "ExportRequest", "ExportResult", "Runner", "backend_names", "get_backend", "register_backend"]
