"""Project exceptions. A :class:`VoloDeployError` is a user-facing error: the CLIs print
its message and exit non-zero without a traceback."""

from __future__ import annotations


class VoloDeployError(Exception):
    """Base class of every error the CLIs report without a traceback."""

    exit_code = 1


class ModelNameError(VoloDeployError, ValueError):
    """Unknown model name or unsupported size."""


class CheckpointError(VoloDeployError):
    """A checkpoint is missing, unreadable, not VOLO, or does not match the requested model."""


class DataError(VoloDeployError):
    """A dataset, image, label mapping or manifest is missing or inconsistent."""


class ExportError(VoloDeployError):
    """An export could not be written (bad output path, existing file without --force...)."""


class ValidationError(VoloDeployError):
    """An exported artifact disagrees with FP32 PyTorch beyond tolerance."""

    def __init__(self, message: str, stats: dict | None = None) -> None:
        super().__init__(message)
        self.stats = stats or {}


class BackendUnavailable(VoloDeployError):
    """A backend's runtime (TensorRT, OpenVINO...) is not installed or has no device."""


class QuantizationError(VoloDeployError):
    """INT8 quantization failed or could not meet its accuracy budget."""


class BadInputError(VoloDeployError):
    """Any other invalid user input (argument values, files)."""

    exit_code = 2
