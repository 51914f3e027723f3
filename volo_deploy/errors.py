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


class DiskFullError(VoloDeployError):
    """A write failed for want of space (ENOSPC, EFBIG from a file-size limit, EDQUOT); nothing was published."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that cleanup runs as for Ctrl-C; exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum


#: errno values that mean "no room to write": ENOSPC, EFBIG (RLIMIT_FSIZE or a file system's size limit), EDQUOT.
DISK_FULL_ERRNOS = frozenset({28, 27, 122})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed write for want of space, also when a library wrapped the OS error in its own
    type and kept only its text (safetensors: ``I/O error: File too large (os error 27)``)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    return any(f"os error {n})" in text for n in DISK_FULL_ERRNOS) or "No space left on device" in text
