"""Labeled image sets from the layouts people really have, all read into :class:`LabeledImages`.

Layouts (``open_dataset(path, layout=None)`` detects one when not given; ``--layout`` on the CLIs).
When several detectors match, every matching reader is run: if they all give the same labels
the first is used and a note says so; if they disagree (or one cannot read the data) it is one
:class:`DataError` showing each reading, and the user picks with ``--layout``:

- ``imagefolder``: one folder per class. Class index = sorted folder order (synsets),
  except all-numeric folder names (ImageNet-V2 ``0..999``), which ARE the class index
  (never string-sorted: "10" < "2").
- ``imagenet-val-gt``: flat val folder + ``ILSVRC2012_validation_ground_truth.txt``
  (1-based devkit IDs) + the devkit's ID->synset mapping (``meta.mat`` or ``ID synset``
  text). The devkit IDs are NOT the sorted-synset index; a GT file without mapping is an error.
- ``kaggle-loc-val``: flat val folder + ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``.
- ``list``: a text file of ``relative/path label`` lines.

Every reader checks what it reads and raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import os
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import DataError

log = logging.getLogger(__name__)

GT_NAME = "ILSVRC2012_validation_ground_truth.txt"
META_NAME = "meta.mat"
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_MAPPING = "LOC_synset_mapping.txt"
#: Image file suffixes, matched case-insensitively (``.JPG`` and ``.JPEG`` count): the one rule of the package.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_SUFFIXES = frozenset(IMAGE_SUFFIXES)
_SYNSET = re.compile(r"^n\d{8}$")


@dataclass
class LabeledImages:
    """Images under ``root`` with integer labels; ``classes[label]`` names the class."""

    root: Path
    items: list[tuple[Path, int]]  # paths relative to root
    classes: list[str]
    layout: str
    notes: list[str] = field(default_factory=list)  # how labels were decided (reported to users)
    classes_inferred: bool = False  # classes = 0..max(label) seen; may be widened to the model's num_classes

    def __len__(self) -> int:
        return len(self.items)

    @property
    def paths(self) -> list[Path]:
        """Absolute paths, in item order."""
        return [self.root / p for p, _ in self.items]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([lab for _, lab in self.items], dtype=np.int64)

    def class_counts(self) -> list[int]:
        """Number of images of each class (index = label)."""
        counts = Counter(lab for _, lab in self.items)
        return [counts.get(i, 0) for i in range(len(self.classes))]

    def fingerprint(self) -> str:
        return root_fingerprint(self.root)

    def describe(self) -> str:
        return f"{self.layout} at {self.root}: {len(self.items)} images, {len(self.classes)} classes"


# ---------------------------------------------------------------- listing and fingerprint


def is_image(name: str) -> bool:
    """Whether a file name has an image suffix (any case)."""
    return os.path.splitext(name)[1].lower() in _SUFFIXES


def scan_images(root: str | Path, sizes: bool = True) -> list[tuple[str, int]]:
    """(posix path relative to ``root``, size in bytes) of every image under ``root``, sorted.

    Hidden files and folders (leading ``.``) are skipped. ``sizes=False`` saves a stat per file (size 0).
    Symlinked folders are followed, each real folder once: a symlink loop (or a second link to a folder
    already listed) is skipped with one warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data {root}: not a folder")
    seen, loops = {os.path.realpath(root)}, []
    out = _walk(root, sizes, seen, loops)
    warn_loops(root, loops)
    return out


_LOOPS_WARNED: set[str] = set()  # roots already warned about (a run lists a tree more than once)


def warn_loops(root: Path, loops: list[str]) -> None:
    """The one warning for the linked folders :func:`_walk` skipped under ``root`` (once per root and process)."""
    if loops and os.path.realpath(root) not in _LOOPS_WARNED:
        _LOOPS_WARNED.add(os.path.realpath(root))
        log.warning(f"data {root}: {len(loops)} linked folder(s) skipped, already listed by their real path "
                    f"(a symlink loop?): {', '.join(loops[:3])}{' ...' if len(loops) > 3 else ''}")


def _walk(root: Path, sizes: bool, seen: set[str], loops: list[str]) -> list[tuple[str, int]]:
    """:func:`scan_images` without the warning; ``seen`` (real paths of folders listed) and ``loops`` (linked
    folders skipped) are shared by the calls of one scan."""
    out: list[tuple[str, int]] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:  # an unreadable folder
            raise DataError(f"data {d}: cannot be listed ({exc.strerror})") from None
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                real = os.path.realpath(e.path)
                if real in seen:
                    loops.append(Path(e.path).relative_to(root).as_posix())
                    continue
                seen.add(real)
                stack.append(Path(e.path))
            elif is_image(e.name) and e.is_file():
                out.append((Path(e.path).relative_to(root).as_posix(), e.stat().st_size if sizes else 0))
    out.sort()
    return out


def root_fingerprint(root: str | Path, listing: list[tuple[str, int]] | None = None) -> str:
    """``sha256:<hex>`` of the sorted relative paths and sizes of every image under ``root``.

    Cheap (no file is read) and stable across machines as long as the files are unchanged.
    """
    listing = scan_images(root) if listing is None else listing
    h = hashlib.sha256()
    for rel, size in listing:
        h.update(f"{rel}\t{size}\n".encode())
    return f"sha256:{h.hexdigest()}"


def paths_fingerprint(paths: list[str]) -> str:
    """``sha256:<hex>`` of sorted relative paths only (sizes ignored)."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        h.update(f"{rel}\n".encode())
    return f"sha256:{h.hexdigest()}"


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class LayoutReader:
    name: str
    read: Callable[..., LabeledImages]
    detect: Callable[[Path], bool]
    help: str


LAYOUTS: dict[str, LayoutReader] = {}


def register_layout(name: str, detect: Callable[[Path], bool], help: str):
    """Decorator: register ``read(path, **opts) -> LabeledImages`` under ``name``."""

    def deco(fn: Callable[..., LabeledImages]) -> Callable[..., LabeledImages]:
        LAYOUTS[name] = LayoutReader(name, fn, detect, help)
        return fn

    return deco


def open_dataset(
    path: str | Path, layout: str | None = None, *, expect_classes: int | None = None, **opts
) -> LabeledImages:
    """Read a labeled image set; ``layout=None`` detects it. ``expect_classes`` (the model's
    num_classes) is checked against the classes found. Other options go to the reader."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data {path}: not found")
    if layout is None:
        hits = matching_layouts(path)
        if len(hits) > 1:
            data = _read_ambiguous(path, hits, opts)
            check_classes(data, expect_classes)
            return data
        layout = hits[0]
    data = _read(path, layout, opts, strict=True)
    check_classes(data, expect_classes)
    return data


def _read(path: Path, layout: str, opts: dict, strict: bool) -> LabeledImages:
    """``layout``'s reader on ``path``; ``strict``: options it does not take are an error (else dropped)."""
    if layout not in LAYOUTS:
        raise DataError(f"data {path}: unknown layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    reader = LAYOUTS[layout].read
    allowed = [k for k in inspect.signature(reader).parameters if k != "path"]
    unknown = sorted(set(opts) - set(allowed))
    if unknown and strict:
        raise DataError(f"data {path}: layout {layout} takes options {allowed}, not {unknown}")
    data = reader(path, **{k: v for k, v in opts.items() if k in allowed})
    if not data.items:
        raise DataError(f"data {path}: no images found ({layout} layout)")
    return data


def matching_layouts(path: Path) -> list[str]:
    """Every layout whose detector accepts ``path`` (registry order); DataError when none does."""
    hits = [r.name for r in LAYOUTS.values() if r.detect(path)]
    if not hits:
        known = "; ".join(f"{r.name}: {r.help}" for r in LAYOUTS.values())
        raise DataError(f"data {path}: layout not recognised. Pass --layout (layout= in Python) one of [{known}]")
    return hits


def detect_layout(path: Path) -> str:
    """The one layout whose detector accepts ``path``; DataError when none or several do."""
    hits = matching_layouts(path)
    if len(hits) > 1:
        raise DataError(f"data {path}: ambiguous layout (matches {', '.join(hits)}); pass --layout (layout= in Python)")
    return hits[0]


def _read_ambiguous(path: Path, hits: list[str], opts: dict) -> LabeledImages:
    """Several layouts match: read with each; the first if all agree on every label, else one DataError."""
    got: dict[str, LabeledImages | DataError] = {}
    for name in hits:
        try:
            got[name] = _read(path, name, opts, strict=False)
        except DataError as exc:
            got[name] = exc
    first = got[hits[0]]
    diffs = {}
    if isinstance(first, LabeledImages):
        diffs = {n: label_difference(first, d) for n, d in got.items() if n != hits[0]}
    if diffs and all(isinstance(d, LabeledImages) for d in got.values()) and not any(diffs.values()):
        msg = f"data {path}: matches layouts {', '.join(hits)}, which give the same labels; used {hits[0]}"
        first.notes.append(msg)
        log.warning(msg)
        return first
    readings = "; ".join(
        f"{n}: {len(d)} images, {len(d.classes)} classes" if isinstance(d, LabeledImages) else f"{n}: cannot read ({d})"
        for n, d in got.items()
    )
    why = "; ".join(f"{hits[0]} vs {n}: {d}" for n, d in diffs.items() if d)
    raise DataError(
        f"data {path}: ambiguous layout: matches {', '.join(hits)}, which {'disagree' if why else 'do not all read'}"
        f" [{readings}]{'; ' + why if why else ''}. Pass --layout {' or --layout '.join(hits)} (layout= in Python)"
    )


def label_difference(a: LabeledImages, b: LabeledImages) -> str:
    """'' when ``a`` and ``b`` hold the same images with the same labels and classes, else the first difference."""
    la, lb = dict(a.items), dict(b.items)
    if la.keys() != lb.keys():
        only = sorted(set(la) ^ set(lb))
        return f"{len(only)} image(s) in only one of them (e.g. {only[0]})"
    diff = [p for p in sorted(la) if la[p] != lb[p] or a.classes[la[p]] != b.classes[lb[p]]]
    if diff:
        p = diff[0]
        return (f"{len(diff)} of {len(la)} labels differ (e.g. {p}: {a.classes[la[p]]} = label {la[p]} vs "
                f"{b.classes[lb[p]]} = label {lb[p]})")
    if a.classes != b.classes:
        return f"classes differ ({len(a.classes)} vs {len(b.classes)}, or in another order)"
    return ""


def check_classes(data: LabeledImages, expect_classes: int | None) -> None:
    """Labels within ``classes``; ``len(classes) == expect_classes`` when given."""
    n = len(data.classes)
    bad = [(p, lab) for p, lab in data.items if not 0 <= lab < n]
    if bad:
        raise DataError(
            f"data {data.root}: {len(bad)} label(s) outside 0..{n - 1} (e.g. {bad[0][0]} -> {bad[0][1]})"
        )
    from volo_deploy.data.classes import map_imagenet_subset

    mapped = map_imagenet_subset(data.classes, data.items, expect_classes)
    if mapped is not None:  # synset folders of an ImageNet-1k subset: each wnid fixes its index
        data.items, data.classes, note = mapped
        data.notes = [n for n in data.notes if n != "class index = sorted folder-name order"] + [note]
        n = len(data.classes)
    if expect_classes is not None and data.classes_inferred and n < expect_classes:
        data.classes = data.classes + [str(i) for i in range(n, expect_classes)]
        n = expect_classes
    if expect_classes is not None and n != expect_classes:
        raise DataError(
            f"data {data.root} ({data.layout}): found {n} classes, the model expects {expect_classes}"
            + ("; " + "; ".join(data.notes) if data.notes else "")
        )


# ---------------------------------------------------------------- helpers


def _class_dirs(path: Path) -> list[str]:
    if not path.is_dir():
        return []
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _flat_images(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_file() and is_image(e.name))


def _find_near(path: Path, name: str, explicit: str | Path | None, what: str) -> Path | None:
    """``explicit`` if given (must exist), else ``name`` in ``path``, its 4 parents, or their devkit/data
    (Kaggle: ``ILSVRC/Data/CLS-LOC/val`` is 4 levels below ``LOC_val_solution.csv``)."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise DataError(f"{what} {p}: not found")
        return p
    d = path if path.is_dir() else path.parent
    for cand in [d, *list(d.parents)[:4]]:
        for p in (cand / name, cand / DEVKIT_DATA / name):
            if p.is_file():
                return p
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    return text.splitlines()


def _stem_numbers(names: list[str]) -> list[int] | None:
    nums = []
    for n in names:
        m = re.search(r"(\d+)$", os.path.splitext(n)[0])
        if not m:
            return None
        nums.append(int(m.group(1)))
    return nums


# ---------------------------------------------------------------- ImageFolder


def _is_imagefolder(path: Path) -> bool:
    return path.is_dir() and bool(_class_dirs(path)) and not _flat_images(path)


@register_layout("imagefolder", _is_imagefolder, "one sub-folder per class (synsets, names, or 0..N-1)")
def read_imagefolder(path: Path, *, numeric: bool | None = None) -> LabeledImages:
    """Class folders. ``numeric=None`` detects all-numeric names (ImageNet-V2: the name is the
    class index); ``numeric=False`` forces sorted-string order (torchvision ImageFolder)."""
    path = Path(path)
    dirs = _class_dirs(path)
    if not dirs:
        raise DataError(f"data {path}: no class sub-folders")
    loose = _flat_images(path)
    if loose:
        raise DataError(
            f"data {path}: has both class sub-folders and {len(loose)} loose images (e.g. {loose[0]}); "
            "a flat val folder needs a label file (layout imagenet-val-gt, kaggle-loc-val or list)"
        )
    all_numeric = all(d.isdigit() for d in dirs)
    if numeric is None:
        numeric = all_numeric
    notes: list[str] = []
    if numeric:
        if not all_numeric:
            bad = [d for d in dirs if not d.isdigit()][:3]
            raise DataError(f"data {path}: numeric=True but folders {bad} are not integers")
        idx = {d: int(d) for d in dirs}
        dup = [k for k, v in Counter(idx.values()).items() if v > 1]
        if dup:
            raise DataError(f"data {path}: several folders name class {dup[0]} (e.g. leading zeros)")
        classes = [str(i) for i in range(max(idx.values()) + 1)]
        notes.append("numeric class folders: folder name = class index (not string-sorted)")
        missing = len(classes) - len(dirs)
        if missing:
            notes.append(f"{missing} class index(es) below {len(classes)} have no folder")
    else:
        idx = {d: i for i, d in enumerate(dirs)}
        classes = list(dirs)
        notes.append("class index = sorted folder-name order")
        if all_numeric and len(dirs) > 10:
            notes.append("numeric folder names string-sorted as requested (numeric=False)")
    items: list[tuple[Path, int]] = []
    empty = []
    seen, loops = {os.path.realpath(path), *(os.path.realpath(path / d) for d in dirs)}, []
    for d in dirs:
        files = _walk(path / d, False, seen, loops)
        if not files:
            empty.append(d)
        items.extend((Path(d) / rel, idx[d]) for rel, _ in files)
    warn_loops(path, loops)
    if empty:
        raise DataError(
            f"data {path}: class folder(s) without images: {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''} (an empty class would shift every later label)"
        )
    return LabeledImages(path, items, classes, "imagefolder", notes, classes_inferred=bool(numeric))


# ---------------------------------------------------------------- ImageNet val + devkit GT


def _is_val_gt(path: Path) -> bool:
    return path.is_dir() and bool(_flat_images(path)) and _find_near(path, GT_NAME, None, "") is not None


def read_devkit_mapping(path: Path) -> dict[int, str]:
    """Devkit ID -> synset from ``meta.mat`` (leaf synsets) or a text file of ``ID synset`` lines."""
    path = Path(path)
    if path.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError:
            raise DataError(
                f"mapping {path}: reading meta.mat needs scipy (pip install scipy), "
                "or pass a text mapping of 'ID synset' lines"
            ) from None
        try:
            syn = loadmat(str(path), squeeze_me=True)["synsets"]
            ids = np.atleast_1d(syn["ILSVRC2012_ID"]).astype(int)
            wnids = [str(w) for w in np.atleast_1d(syn["WNID"])]
            leaf = (
                np.atleast_1d(syn["num_children"]).astype(int) == 0
                if "num_children" in syn.dtype.names
                else np.ones(len(ids), bool)
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"mapping {path}: not a devkit meta.mat with synsets ({exc})") from None
        pairs = [(int(i), w) for i, w, lf in zip(ids, wnids, leaf) if lf]
    else:
        pairs = []
        for n, line in enumerate(_read_lines(path), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) < 2 or not parts[0].isdigit():
                raise DataError(
                    f"mapping {path} line {n}: expected 'ID synset' (devkit ID first), found {line.strip()!r}. "
                    f"{KAGGLE_MAPPING} ('synset words', sorted order) is NOT the devkit ID order"
                )
            pairs.append((int(parts[0]), parts[1]))
    mapping: dict[int, str] = {}
    for i, w in pairs:
        if i in mapping:
            raise DataError(f"mapping {path}: devkit ID {i} appears twice")
        mapping[i] = w
    if not mapping:
        raise DataError(f"mapping {path}: empty")
    if sorted(mapping) != list(range(1, len(mapping) + 1)):
        raise DataError(f"mapping {path}: devkit IDs should be 1..{len(mapping)}, found {min(mapping)}..{max(mapping)}")
    dup = [w for w, c in Counter(mapping.values()).items() if c > 1]
    if dup:
        raise DataError(f"mapping {path}: synset {dup[0]} mapped from several IDs")
    return mapping


@register_layout("imagenet-val-gt", _is_val_gt, f"flat val folder + {GT_NAME} + devkit meta.mat / 'ID synset' map")
def read_val_gt(path: Path, *, labels: str | Path | None = None, mapping: str | Path | None = None) -> LabeledImages:
    """Flat val folder; ``labels`` = the GT file, ``mapping`` = meta.mat or ``ID synset`` text
    (both searched near ``path`` when not given). Label = index of the synset in sorted order."""
    path = Path(path)
    gt = _find_near(path, GT_NAME, labels, "ground truth")
    if gt is None:
        raise DataError(f"data {path}: {GT_NAME} not found here or in its parents; pass labels=")
    mp = _find_near(path, META_NAME, mapping, "mapping")
    if mp is None:
        raise DataError(
            f"ground truth {gt}: needs the devkit ID -> synset mapping (meta.mat, or a text file of "
            "'ID synset' lines), pass mapping=. Its numbers are 1-based devkit IDs, NOT the sorted-synset "
            "class index models use: read as labels they give ~0.1% top-1."
        )
    id2syn = read_devkit_mapping(mp)
    classes = sorted(id2syn.values())
    syn2idx = {s: i for i, s in enumerate(classes)}
    gt_ids = []
    for n, line in enumerate(_read_lines(gt), 1):
        s = line.strip()
        if not s:
            continue
        if not s.isdigit() or int(s) not in id2syn:
            raise DataError(f"ground truth {gt} line {n}: {s!r} is not a devkit ID in {mp} (1..{len(id2syn)})")
        gt_ids.append(int(s))
    files = _flat_images(path)
    if len(gt_ids) != len(files):
        raise DataError(
            f"ground truth {gt}: {len(gt_ids)} labels but {len(files)} images in {path}; "
            "line i labels the i-th image in sorted order, so both must be complete"
        )
    nums = _stem_numbers(files)
    if nums is not None and nums != list(range(1, len(files) + 1)):
        raise DataError(
            f"data {path}: image numbers are not 1..{len(files)} in sorted order (e.g. {files[0]}); "
            f"cannot match them to the lines of {gt}"
        )
    items = [(Path(f), syn2idx[id2syn[i]]) for f, i in zip(files, gt_ids)]
    notes = [f"labels: {gt.name} devkit IDs -> synsets via {mp.name} -> sorted-synset index"]
    return LabeledImages(path, items, classes, "imagenet-val-gt", notes)


# ---------------------------------------------------------------- Kaggle LOC val


def _is_kaggle(path: Path) -> bool:
    return path.is_dir() and bool(_flat_images(path)) and _find_near(path, KAGGLE_CSV, None, "") is not None


def read_synset_mapping(path: Path) -> list[str]:
    """Class order from ``LOC_synset_mapping.txt`` (``synset words...`` per line)."""
    out = []
    for n, line in enumerate(_read_lines(path), 1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if not _SYNSET.match(parts[0]):
            raise DataError(f"mapping {path} line {n}: expected 'nXXXXXXXX words', found {line.strip()!r}")
        out.append(parts[0])
    dup = [w for w, c in Counter(out).items() if c > 1]
    if dup:
        raise DataError(f"mapping {path}: synset {dup[0]} listed twice")
    if not out:
        raise DataError(f"mapping {path}: empty")
    return out


@register_layout("kaggle-loc-val", _is_kaggle, f"flat val folder + Kaggle {KAGGLE_CSV} + {KAGGLE_MAPPING}")
def read_kaggle_val(
    path: Path, *, labels: str | Path | None = None, mapping: str | Path | None = None
) -> LabeledImages:
    """Flat val folder; ``labels`` = LOC_val_solution.csv, ``mapping`` = LOC_synset_mapping.txt
    (its line order is the class order, used as given)."""
    path = Path(path)
    sol = _find_near(path, KAGGLE_CSV, labels, "solution csv")
    if sol is None:
        raise DataError(f"data {path}: {KAGGLE_CSV} not found here or in its parents; pass labels=")
    mp = _find_near(path, KAGGLE_MAPPING, mapping, "mapping")
    if mp is None:
        raise DataError(f"solution csv {sol}: needs {KAGGLE_MAPPING} (the class order); pass mapping=")
    classes = read_synset_mapping(mp)
    syn2idx = {s: i for i, s in enumerate(classes)}
    notes = [f"class order = line order of {mp.name}"]
    if classes != sorted(classes):
        notes.append(f"{mp.name} is NOT in sorted synset order: its order used as given")
        log.warning(f"mapping {mp}: not in sorted synset order; using its line order as the class order")
    labels_by_id: dict[str, int] = {}
    try:
        with open(sol, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise DataError(f"solution csv {sol}: cannot be read ({exc})") from None
    if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
        raise DataError(f"solution csv {sol}: expected header 'ImageId,PredictionString', found {rows[:1]}")
    for n, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) < 2 or not row[1].split():
            raise DataError(f"solution csv {sol} line {n}: expected 'ImageId,synset ...', found {row}")
        image_id, tokens = row[0].strip(), row[1].split()
        syns = {t for t in tokens if _SYNSET.match(t)}
        if len(syns) != 1 or tokens[0] not in syns:
            raise DataError(f"solution csv {sol} line {n}: {image_id} has synsets {sorted(syns)}, expected exactly one")
        if tokens[0] not in syn2idx:
            raise DataError(f"solution csv {sol} line {n}: synset {tokens[0]} is not in {mp}")
        if image_id in labels_by_id:
            raise DataError(f"solution csv {sol} line {n}: image id {image_id} appears twice")
        labels_by_id[image_id] = syn2idx[tokens[0]]
    files = _flat_images(path)
    stems = {os.path.splitext(f)[0]: f for f in files}
    if len(stems) != len(files):
        raise DataError(f"data {path}: several images share a name stem (e.g. different extensions)")
    missing = sorted(set(stems) - set(labels_by_id))
    extra = sorted(set(labels_by_id) - set(stems))
    if missing or extra:
        raise DataError(
            f"solution csv {sol}: {len(labels_by_id)} rows for {len(files)} images in {path}; "
            f"{len(missing)} image(s) without a row (e.g. {missing[:2]}), {len(extra)} row(s) without an image "
            f"(e.g. {extra[:2]})"
        )
    items = [(Path(stems[s]), labels_by_id[s]) for s in sorted(stems)]
    return LabeledImages(path, items, classes, "kaggle-loc-val", notes)


# ---------------------------------------------------------------- list file


def _is_list(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list", ".tsv")


@register_layout("list", _is_list, "a text file of 'relative/path label' lines")
def read_list(
    path: Path, *, root: str | Path | None = None, classes: list[str] | None = None, check_files: bool = True
) -> LabeledImages:
    """``relative/path label`` per line (``#`` comments); paths relative to ``root`` or the file's folder.
    ``classes`` names the labels; otherwise classes are ``0..max(label)``."""
    path = Path(path)
    if path.name in (GT_NAME, KAGGLE_MAPPING, "synset_words.txt"):
        raise DataError(f"list {path}: this is a label/mapping file, not a 'path label' list; pass the image folder")
    base = Path(root) if root is not None else path.parent
    items: list[tuple[Path, int]] = []
    for n, line in enumerate(_read_lines(path), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.rsplit(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise DataError(f"list {path} line {n}: expected 'relative/path label', found {s!r}")
        rel = Path(parts[0])
        if rel.is_absolute():
            raise DataError(f"list {path} line {n}: path {parts[0]} must be relative (to {base})")
        items.append((rel, int(parts[1])))
    dup = [p for p, c in Counter(p for p, _ in items).items() if c > 1]
    if dup:
        raise DataError(f"list {path}: {dup[0]} listed {Counter(p for p, _ in items)[dup[0]]} times")
    neg = [(p, lab) for p, lab in items if lab < 0]
    if neg:
        raise DataError(f"list {path}: negative label {neg[0][1]} for {neg[0][0]}")
    if check_files:
        missing = [p for p, _ in items if not (base / p).is_file()]
        if missing:
            raise DataError(f"list {path}: {len(missing)} file(s) not found under {base} (e.g. {missing[0]})")
    n_cls = max((lab for _, lab in items), default=-1) + 1
    names = list(classes) if classes is not None else [str(i) for i in range(n_cls)]
    notes = [f"labels as written in {path.name}"]
    return LabeledImages(base, items, names, "list", notes, classes_inferred=classes is None)
