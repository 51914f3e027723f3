"""Backend interface and registry.

A backend couples an exporter (PyTorch VOLO -> artifact files) and a runner
(artifact -> logits). Adding one means one module ``volo_deploy/backends/<name>_backend.py``
with a :class:`Backend` subclass decorated with :func:`register_backend`: the registry finds
the module, its ``Options`` dataclass fields marked with :func:`volo_deploy.options.flag` become
``volo-export`` flags, its ``distributions`` go into the manifests' library versions.
Public methods check inputs and time; subclasses override the ``_impl`` parts only.
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from volo_deploy.backends.precision import Precision
from volo_deploy.errors import BackendUnavailable, BadInputError
from volo_deploy.runtime import run_in_chunks  # noqa: F401  (re-exported: backends' runners use it)

_REGISTRY: dict[str, type["Backend"]] = {}
_ALIASES: dict[str, str] = {}


def register_backend(name: str, *aliases: str):
    """Class decorator: make a :class:`Backend` subclass known under ``name`` (and aliases)."""

    def wrap(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _REGISTRY[name] = cls
        for a in aliases:
            _ALIASES[a] = name
        return cls

    return wrap


#: Listing order of the built-in backends (the demo table's row order); other modules follow by name.
_ORDER = ("torch_backend", "onnxruntime_backend", "openvino_backend", "tensorrt_backend", "torch_tensorrt_backend")


@functools.cache
def _module_names() -> tuple[str, ...]:
    import pkgutil

    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.endswith("_backend"))
    return tuple([m for m in _ORDER if m in found] + [m for m in found if m not in _ORDER])


def backend_modules() -> list[str]:
    """The ``volo_deploy.backends.*_backend`` modules, built-ins first."""
    return list(_module_names())


def _load_builtin() -> list[str]:
    """Import every backend module (registering its class); the registered names in module order
    (whatever order they were first imported in), then any registered elsewhere."""
    import importlib

    mods = backend_modules()
    for mod in mods:  # none of them imports its runtime at import time
        importlib.import_module(f"volo_deploy.backends.{mod}")
    rank = {f"volo_deploy.backends.{m}": i for i, m in enumerate(mods)}
    return sorted(_REGISTRY, key=lambda n: rank.get(_REGISTRY[n].__module__, len(rank)))


def backend_help() -> str:
    """``--backend`` help text: every registered name with its aliases."""
    names = _load_builtin()
    aliases: dict[str, list[str]] = {}
    for alias, name in _ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return " | ".join(f"{n} ({', '.join(aliases[n])})" if n in aliases else n for n in names)


def library_distributions() -> tuple[str, ...]:
    """``torch`` and every registered backend's distributions, in registry order, once each."""
    names = ["torch"]
    for backend in _load_builtin():
        names += [d for d in _REGISTRY[backend].distributions if d not in names]
    return tuple(names)


def backend_names() -> list[str]:
    return _load_builtin()


def get_backend(name: str) -> type["Backend"]:
    """The backend class registered as ``name`` (or an alias such as ``onnx``, ``trt``)."""
    _load_builtin()
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        known = ", ".join(sorted(list(_REGISTRY) + list(_ALIASES)))
        raise BadInputError(f"unknown backend {name!r}; known: {known}")
    return _REGISTRY[key]


@dataclass(frozen=True)
class ExportRequest:
    """What every exporter needs, whatever the backend."""

    output_dir: Path
    precision: Precision = "fp32"
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = 18
    force: bool = False
    checkpoint_sha256: str = ""  # filled by the export pipeline
    options: Any = None  # the backend's own frozen Options dataclass
    labels: Path | None = None  # --labels: class names file (None: ImageNet-1k names for 1000 classes)
    quant: Any = None  # volo_deploy.quant.Int8Options for precision "int8", with its --calib-data (None: defaults)
    val_data: Path | None = None  # validation images (None: demo digits or synthetic), filled by the pipeline
    n_validate: int = 8
    tolerance: Any = None  # volo_deploy.export.validate.Tolerance (None: the precision's default)


@dataclass(frozen=True)
class Validate:
    """Validate the artifact against FP32 PyTorch right after it is written (the default)."""


@dataclass(frozen=True)
class Skip:
    """No validation here, and why (e.g. nothing runnable is built on this machine)."""

    reason: str


@dataclass
class ExportArtifacts:
    """What :meth:`Backend.export_impl` wrote next to the main file, and details for the manifest."""

    files: list[str] = field(default_factory=list)  # extra files, names relative to the staging folder
    details: dict[str, Any] = field(default_factory=dict)
    validation: Validate | Skip = field(default_factory=Validate)


@dataclass
class ExportResult:
    backend: str
    precision: Precision
    output_dir: Path
    model_file: Path
    files: list[Path]
    manifest: Path
    validation: dict[str, float]
    export_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    executed_precision: str | None = None  # what the runtime reported it computes in (None: not validated)


class Runner(ABC):
    """Runs one artifact. ``run`` checks the batch and records the wall time of each call."""

    #: The precision the runtime computes in, read back from it where it says (``fp32``, ``bf16``,
    #: ``int8+fp32``...; see :mod:`volo_deploy.backends.precision`); ``None``: not reported.
    executed_precision: str | None = None
    #: A warning about running this artifact on this machine (e.g. INT8 weights its kernels can saturate).
    warning: str | None = None

    def __init__(self, input_shape: tuple[int | None, ...]) -> None:
        self.input_shape = input_shape  # (batch or None, 3, S, S)
        self.times: list[float] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = self.input_shape
        if batch.ndim != 4 or any(w is not None and w != g for w, g in zip(want, batch.shape)):
            raise BadInputError(f"input batch of shape {tuple(batch.shape)} does not fit the model input {want}")
        start = time.perf_counter()
        out = self._run_impl(batch)
        self.times.append(time.perf_counter() - start)
        return out

    @abstractmethod
    def _run_impl(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Release runtime resources (optional)."""


class Backend(ABC):
    """One deployment target: ``export`` writes artifacts, ``load`` gives a :class:`Runner`."""

    name: ClassVar[str] = ""
    precisions: ClassVar[tuple[Precision, ...]] = ("fp32",)
    model_suffix: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    requires: ClassVar[tuple[str, ...]] = ()  # importable modules the runtime needs
    extra: ClassVar[str] = ""  # the pip extra that installs them
    distributions: ClassVar[tuple[str, ...]] = ()  # installed distributions whose versions manifests record

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` when the runtime can be used here, else a one-line reason."""
        import importlib.util

        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"not installed: {', '.join(missing)} (pip install 'volo_deploy[{cls.extra}]')"
        return None

    @classmethod
    def require(cls) -> None:
        reason = cls.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend {cls.name}: unavailable: {reason}")

    def model_filename(self, model_name: str, request: ExportRequest) -> str:
        """Name of the main artifact file (what the runner loads) for ``request``."""
        return f"{model_name}_{request.precision}{self.model_suffix}"

    def check_request(self, request: ExportRequest) -> None:
        """Refuse a request this backend cannot serve here (default: runtime must be installed)."""
        self.require()

    @classmethod
    def precision_unavailable_reason(cls, precision: str) -> str | None:
        """``None`` when ``precision`` (one of :attr:`precisions`) can run on this machine, else why not."""
        return None

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            raise BadInputError(f"backend {self.name} supports {', '.join(self.precisions)}, not {precision}")
        reason = self.precision_unavailable_reason(precision)
        if reason:
            raise BackendUnavailable(f"backend {self.name}: {precision} unavailable here: {reason}")

    @abstractmethod
    def export_impl(self, model, request: ExportRequest, staged: Path, model_file: str) -> ExportArtifacts:
        """Write the artifact(s) into ``staged`` (``model_file`` first); return the extra files written,
        the manifest details and whether to validate."""

    @abstractmethod
    def load(self, artifact: Path, options: Any = None) -> Runner:
        """A runner for a written artifact."""

    def validation_options(self, request: ExportRequest) -> Any:
        """Runtime options for the check right after export: the request's own options."""
        return request.options

    def throughput_options(self, options: Any) -> Any:
        """Options of the runtime's throughput mode for batch evaluation (several requests in flight:
        its runner has ``run_async``), or ``None`` when it has none (default). Latency is always
        measured with the plain ``options``."""
        return None
