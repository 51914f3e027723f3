"""Atomic writes, file hashes and the export manifest.

Nothing is ever left half-written: files are written to a temp name in the target
folder and renamed; a whole export is staged in a temp folder and published file by
file only after validation.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volo_deploy import __version__
from volo_deploy.errors import ExportError

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "volo_deploy.manifest/1"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def prepare_output_dir(out: str | Path, names: list[str], force: bool) -> Path:
    """Create ``out`` if needed; refuse to replace any of ``names`` there unless ``force``."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"output dir {out}: cannot be created ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExportError(f"output dir {out}: not writable")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise ExportError(f"output dir {out}: {', '.join(existing)} already exist(s); pass --force to replace")
    return out


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A temp folder inside ``out`` that is removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, out: Path, names: list[str]) -> list[Path]:
    """Move each staged file into ``out`` by rename (atomic per file, same filesystem)."""
    published = []
    for n in names:
        src, dst = staged / n, out / n
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        published.append(dst)
    return published


def file_entries(root: Path, names: list[str]) -> list[dict]:
    return [{"path": n, "bytes": (root / n).stat().st_size, "sha256": sha256_file(root / n)} for n in names]


def library_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where missing), without importing them."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def machine_info() -> dict[str, object]:
    """The machine section of manifests and reports (see :mod:`volo_deploy.machine`)."""
    from volo_deploy.machine import describe_machine

    return describe_machine()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def toolkit_version() -> str:
    return __version__
