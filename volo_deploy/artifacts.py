"""Atomic writes, file hashes and the export manifest.

Nothing is ever left half-written or half-published: files are written to a temp name in
the target folder and renamed; a whole export, manifest included, is staged in a temp
folder (``.staging-<pid>-*``) and published as a set, the manifest last, only after
validation; if a rename fails, what was published is taken back. A staging folder left
by a killed run is removed by the next run into the same folder once its process is gone.
An existing target that is not a regular file (symlink, FIFO, device, socket, folder) is
never written through or replaced.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volo_deploy import __version__
from volo_deploy.errors import BadInputError, DiskFullError, ExportError, is_disk_full

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "volo_deploy.manifest/1"
STAGING_PREFIX = ".staging-"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_regular_target(path: str | Path) -> None:
    """BadInputError (exit 2) when ``path`` exists and is not a regular file: a symlink, FIFO, device node,
    socket or folder is left untouched rather than written through or replaced."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be checked ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else (
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device node")
        raise BadInputError(f"{path}: exists and is {kind}, not a regular file; left untouched (remove it or "
                            "choose another path)")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    Refuses a ``path`` that is not a regular file (:func:`check_regular_target`); a full disk is
    :class:`DiskFullError` naming ``path``, with nothing left behind.
    """
    path = Path(path)
    check_regular_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"disk full while writing {path} ({exc.strerror})") from None
            raise
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


def prepare_output_dir(out: str | Path, names: list[str], force: bool) -> tuple[Path, Path | None]:
    """Create ``out`` if needed; refuse to replace any of ``names`` there unless ``force``, and never a
    ``name`` that is not a regular file. Returns (out, the topmost folder this call created or None), so that
    a failed export can remove what it made."""
    out = Path(out)
    created = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"output dir {out}: cannot be created ({exc.strerror})") from None
    try:
        if not os.access(out, os.W_OK | os.X_OK):
            raise ExportError(f"output dir {out}: not writable")
        for n in names:
            check_regular_target(out / n)
        existing = [n for n in names if (out / n).exists()]
        if existing and not force:
            raise ExportError(f"output dir {out}: {', '.join(existing)} already exist(s); pass --force to replace")
    except BaseException:
        remove_created(created)
        raise
    return out, created


def remove_created(created: Path | None) -> None:
    """Remove a folder an export created (:func:`prepare_output_dir`) when that export failed."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the ``.staging-<pid>-*`` folders in ``out`` whose process is gone (a SIGKILLed export)."""
    removed = []
    for p in Path(out).glob(f"{STAGING_PREFIX}*"):
        pid = p.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if p.is_dir() and not p.is_symlink() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            log.info(f"removed {p}, left by an export (pid {pid}) that is no longer running")
    return removed


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A temp folder ``.staging-<pid>-*`` inside ``out``, removed whatever happens (stale ones first)."""
    remove_stale_staging(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, out: Path, names: list[str]) -> list[Path]:
    """Move the staged ``names`` into ``out`` as a set, by rename (same file system), in the given order
    (put the manifest last). Files they replace are kept aside in ``staged`` until every rename succeeded;
    on any failure, the published ones are taken back and the replaced ones restored."""
    aside = staged / ".replaced"
    done: list[tuple[Path, Path | None]] = []  # (published, the file it replaced, kept aside)
    try:
        for n in names:
            src, dst = staged / n, out / n
            check_regular_target(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if dst.exists():
                old = aside / n
                old.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dst, old)
            done.append((dst, old))
            os.replace(src, dst)
    except BaseException:
        for dst, old in reversed(done):
            if old is not None:
                os.replace(old, dst)
            else:
                dst.unlink(missing_ok=True)
        raise
    return [dst for dst, _ in done]


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
