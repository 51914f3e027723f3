"""Labeled images -> preprocessed float32 batches through the one :class:`EvalTransform`.

Unreadable or corrupt files are skipped with a warning and recorded (``skipped``),
never a crash midway. :func:`open_images` is the single entry point for "data" given
as a folder, a list file or a subset manifest.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from volo_deploy.data.layouts import LabeledImages, open_dataset
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.errors import DataError

log = logging.getLogger(__name__)

#: Errors that mean "this file is not a usable image" (Pillow raises SyntaxError for broken PNG chunks).
_IMAGE_ERRORS = (DataError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_WARN_EACH = 5  # individual warnings before only the final summary


_ORIENTATION = 0x0112  # the EXIF orientation tag; 1 = upright


def decode_image(path: str | Path, transform: EvalTransform) -> np.ndarray:
    """One image file through ``transform``; raises one of ``_IMAGE_ERRORS`` when it is not a usable image."""
    return decode_oriented(path, transform)[0]


def decode_oriented(path: str | Path, transform: EvalTransform) -> tuple[np.ndarray, bool]:
    """(:func:`decode_image`, whether its EXIF orientation tag says it is not upright)."""
    with Image.open(path) as img:
        img.load()
        return transform(img), img.getexif().get(_ORIENTATION, 1) not in (1, None)


def try_decode(path: str | Path, transform: EvalTransform) -> tuple[np.ndarray | None, str, bool]:
    """(image, '', EXIF-rotated?) or (None, 'ErrorType: why', False): :func:`decode_oriented` for a worker pool."""
    try:
        arr, rotated = decode_oriented(path, transform)
        return arr, "", rotated
    except _IMAGE_ERRORS as exc:
        return None, f"{type(exc).__name__}: {exc}", False


@dataclass
class Batch:
    x: np.ndarray  # float32 (B, 3, S, S)
    labels: np.ndarray  # int64 (B,)
    paths: list[str]  # relative to the dataset root


@dataclass
class LoadedImages:
    """A whole set in memory, plus the files that were skipped: (relative path, reason)."""

    x: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def open_images(
    source: str | Path, layout: str | None = None, root: str | Path | None = None, **opts
) -> LabeledImages:
    """Labeled images from a folder (layout detected unless given), a list file (paths relative
    to ``root`` or its folder) or a subset manifest JSON (resolved against ``root`` or its
    recorded root). ``opts`` go to the layout reader / :func:`open_dataset` (e.g. ``expect_classes``)."""
    source = Path(source)
    if source.suffix.lower() == ".json" and layout in (None, "manifest"):
        from volo_deploy.data.sampler import read_manifest, resolve

        verify = opts.pop("verify", "full")
        expect = opts.pop("expect_classes", None)
        if opts:
            raise DataError(f"manifest {source}: unexpected options {sorted(opts)}")
        data = resolve(read_manifest(source), root, verify=verify)
        if expect is not None and len(data.classes) != expect:
            raise DataError(f"manifest {source}: {len(data.classes)} classes, the model expects {expect}")
        return data
    if root is not None:
        if not source.is_file():
            raise DataError(f"data {source}: root= applies to list files and manifests, not to a folder")
        opts["root"] = root
    return open_dataset(source, layout, **opts)


class ImageBatches:
    """Iterable of :class:`Batch` over ``data``; ``skipped`` fills in as it goes.

    ``for b in ImageBatches(data, tf, batch_size=32): ...`` then read ``.skipped``.
    """

    def __init__(
        self,
        data: LabeledImages,
        transform: EvalTransform,
        batch_size: int = 32,
        *,
        progress: bool = True,
        desc: str = "images",
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.transform, self.batch_size = data, transform, batch_size
        self.progress, self.desc = progress, desc
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        from tqdm.auto import tqdm

        self.skipped = []
        xs: list[np.ndarray] = []
        labels: list[int] = []
        paths: list[str] = []
        with tqdm(total=len(self.data), desc=self.desc, unit="img", disable=not self.progress) as bar:
            for rel, label in self.data.items:
                try:
                    xs.append(self._load(self.data.root / rel))
                    labels.append(label)
                    paths.append(Path(rel).as_posix())
                except _IMAGE_ERRORS as exc:
                    self._skip(Path(rel).as_posix(), exc)
                bar.update(1)
                if len(xs) == self.batch_size:
                    yield Batch(np.stack(xs), np.asarray(labels, np.int64), paths)
                    xs, labels, paths = [], [], []
            if xs:
                yield Batch(np.stack(xs), np.asarray(labels, np.int64), paths)
        if self.skipped:
            log.warning(f"{len(self.skipped)} of {len(self.data)} image(s) under {self.data.root} skipped as "
                        "unreadable")

    def _load(self, path: Path) -> np.ndarray:
        return decode_image(path, self.transform)

    def _skip(self, rel: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.skipped.append((rel, reason))
        if len(self.skipped) <= _WARN_EACH:
            log.warning(f"skipping unreadable image {self.data.root / rel} ({reason})")


def iter_batches(
    data: LabeledImages, transform: EvalTransform, batch_size: int = 32, *, progress: bool = True
) -> ImageBatches:
    """Batches for large evaluations (nothing held beyond one batch); see :class:`ImageBatches`."""
    return ImageBatches(data, transform, batch_size, progress=progress)


def load_images(
    data: LabeledImages, transform: EvalTransform, *, progress: bool = True, desc: str = "images"
) -> LoadedImages:
    """Every image of ``data`` in memory. DataError only if none could be read."""
    batches = ImageBatches(data, transform, batch_size=256, progress=progress, desc=desc)
    parts = list(batches)
    if not parts:
        raise DataError(f"data {data.root}: none of {len(data)} image(s) could be read (e.g. {batches.skipped[:1]})")
    return LoadedImages(
        x=np.concatenate([b.x for b in parts]),
        labels=np.concatenate([b.labels for b in parts]),
        paths=[p for b in parts for p in b.paths],
        skipped=batches.skipped,
    )


# ---------------------------------------------------------------- streaming


@dataclass
class DecodedBatch:
    """One batch of preprocessed images, the items it holds and those that could not be read."""

    x: np.ndarray  # float32 (B, 3, S, S); B may be 0 when every image of the batch was unreadable
    labels: np.ndarray  # int64 (B,)
    used: list[tuple[str, int]]
    skipped: list[str]  # 'path: reason'
    rotated: list[str] = field(default_factory=list)  # paths whose EXIF orientation is not 1 (ignored unless asked)


def _assemble(chunk: list[tuple[str, int]], results: list[tuple[np.ndarray | None, str, bool]], tf) -> DecodedBatch:
    used = [it for it, (arr, _, _) in zip(chunk, results) if arr is not None]
    skipped = [f"{rel}: {why}" for (rel, _), (arr, why, _) in zip(chunk, results) if arr is None]
    rotated = [rel for (rel, _), (_, _, rot) in zip(chunk, results) if rot]
    arrs = [arr for arr, _, _ in results if arr is not None]
    x = np.stack(arrs) if arrs else np.empty((0, 3, tf.img_size, tf.img_size), np.float32)
    return DecodedBatch(x, np.asarray([lab for _, lab in used], dtype=np.int64), used, skipped, rotated)


def _check_one(path: str) -> str:
    """'' when ``path`` decodes as an image, else 'ErrorType: why'."""
    try:
        with Image.open(path) as img:
            img.load()
        return ""
    except _IMAGE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


def check_readable(root: Path, items: list[tuple[str, int]], workers: int = 2) -> None:
    """DataError naming every unreadable image of ``items`` (``--strict-data``: checked before any work)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [str(Path(root) / rel) for rel, _ in items]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bad = [(rel, why) for (rel, _), why in zip(items, pool.map(_check_one, paths)) if why]
    if bad:
        listed = "; ".join(f"{rel} ({why})" for rel, why in bad[:5])
        raise DataError(f"data {root}: {len(bad)} of {len(items)} image(s) unreadable (--strict-data): {listed}"
                        + (" ..." if len(bad) > 5 else "") + "; fix or remove them, or run without --strict-data "
                        "to skip them")


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_batches(
    root: Path, items: list[tuple[str, int]], tf, batch: int, workers: int = 2, mode: str = "thread", prefetch: int = 2
) -> Iterator[DecodedBatch]:
    """Decode ``items`` (relative to ``root``) with ``tf`` (EvalTransform), ``batch`` at a time, in order.

    A pool of ``workers`` threads (or processes, ``mode="process"``) decodes up to ``prefetch``
    batches ahead of the consumer, so at most ``prefetch + 1`` batches are in memory whatever
    the number of images; ``workers=0`` decodes in the calling thread.
    """
    chunks = (items[i : i + batch] for i in range(0, len(items), batch))
    if workers <= 0:
        for chunk in chunks:
            yield _assemble(chunk, [try_decode(str(root / rel), tf) for rel, _ in chunk], tf)
        return
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    # Ctrl-C reaches the whole process group: decode processes ignore it, the driver stops them
    pool = (ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint) if mode == "process"
            else ThreadPoolExecutor(max_workers=workers))
    with pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, [pool.submit(try_decode, str(root / rel), tf) for rel, _ in chunk]))
            if len(pending) > prefetch:
                done, futs = pending.popleft()
                yield _assemble(done, [f.result() for f in futs], tf)
        while pending:
            done, futs = pending.popleft()
            yield _assemble(done, [f.result() for f in futs], tf)
