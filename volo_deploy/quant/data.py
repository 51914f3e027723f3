"""The one adapter between the quantizer and :mod:`volo_deploy.data`: images -> arrays.

Calibration and evaluation sets are read through ``open_images`` (folders of any
supported layout, list files, subset manifests), subsampled with the stratified
``sample_subset`` and preprocessed with the model's one ``EvalTransform``; unreadable
images are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from volo_deploy.errors import BadInputError, DataError, QuantizationError

DEFAULT_EVAL_SIZE = 1000  # stratified eval subset of a larger set (the demo uses its 360 val images)


@dataclass
class ImageSet:
    x: np.ndarray  # float32 (N, 3, S, S)
    labels: np.ndarray  # int64 (N,)
    source: str
    manifest_sha256: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "images": int(len(self.x)),
            "skipped": len(self.skipped),
            "manifest_sha256": self.manifest_sha256,
        }


def _load(cfg, data, source: str, manifest_sha: str | None, desc: str) -> ImageSet:
    from volo_deploy.data.dataset import load_images
    from volo_deploy.data.transforms import EvalTransform

    loaded = load_images(data, EvalTransform.for_config(cfg), desc=desc)
    return ImageSet(loaded.x, loaded.labels, source, manifest_sha, loaded.skipped)


def _subset(data, size: int | None, seed: int):
    """A stratified ``size``-image subset of ``data`` (all of it when None or larger) and its manifest hash.

    The subset's files come from ``data``, listed a moment ago: they are not checked against the root again.
    """
    from volo_deploy.data.sampler import sample_subset, subset_images

    if size is None or size >= len(data):
        return data, None
    manifest = sample_subset(data, total=size, seed=seed)
    return subset_images(manifest, data.root), manifest.content_hash()


def _open_source(source: str | Path, layout: str | None):
    """(images, content hash when ``source`` is a subset manifest): a manifest is read once, its root scanned once."""
    from volo_deploy.data import sampler
    from volo_deploy.data.dataset import open_images

    is_json = Path(source).suffix.lower() == ".json"
    if is_json and layout in (None, "manifest"):
        manifest = sampler.read_manifest(source)
        return sampler.resolve(manifest, verify="full"), manifest.content_hash()
    data = open_images(source, layout=layout)
    return data, sampler.read_manifest(source).content_hash() if is_json else None


def calibration_set(
    cfg, source: str | Path | None = None, size: int | None = None, seed: int = 0, layout: str | None = None
) -> ImageSet:
    """Calibration images for ``cfg``: ``source`` (folder, list file or manifest, read as ``layout``
    or detected; a stratified ``size``-image subset of it, default 300-1000 by class count), or the
    shipped demo manifest (digits train, 300 images) for the demo model."""
    from volo_deploy.data import sampler

    if source is None:
        if cfg.family != "volo_demo":
            raise QuantizationError("INT8 needs calibration images: pass --calib-data (folder, list file or manifest)")
        manifest = sampler.read_manifest(sampler.demo_calibration_manifest())
        data = sampler.demo_calibration_data(manifest=manifest)
        data, sub = _subset(data, size, seed)
        desc = f"demo manifest {sampler.DEMO_MANIFEST_NAME}"
        return _load(cfg, data, desc, sub or manifest.content_hash(), "calibration images")
    data, sha = _open_source(source, layout)
    if sha is None and size is None:
        size = sampler.default_calib_size(len(data.classes))
    data, sub = _subset(data, size, seed)
    return _load(cfg, data, str(source), sub or sha, "calibration images")


def eval_set(cfg, source: str | Path | None = None, size: int | None = DEFAULT_EVAL_SIZE, seed: int = 1) -> ImageSet:
    """Held-out images to measure the top-1 drop on: ``source`` (stratified subset of ``size``)
    or, for the demo model, the digits val split (360 images). Synset folders of an ImageNet-1k
    subset get their ImageNet-1k index."""
    from volo_deploy.data.dataset import open_images

    if source is None:
        if cfg.family != "volo_demo":
            raise QuantizationError("the top-1 budget needs held-out labeled images: pass --eval-data")
        from volo_deploy.data.digits import default_demo_dir, write_digits_tree

        source = write_digits_tree(default_demo_dir(), "val")
        size = None
    data, sub = _subset(open_images(source, expect_classes=cfg.num_classes), size, seed)
    return _load(cfg, data, str(source), sub, "eval images")


# ---------------------------------------------------------------- one plan for calibration + budget images

DEFAULT_HOLDOUT, MIN_HOLDOUT, MIN_CALIB = 200, 50, 32


@dataclass
class Int8Data:
    """The images an INT8 export uses, listed (not decoded): calibration, and the budget's images.

    ``budget``: ``"labels"`` (top-1 drop on ``eval_source``), ``"agreement"`` (agreement with FP32 on
    ``holdout``, a slice of the calibration source disjoint from ``calib``) or None (no check).
    """

    calib: object  # LabeledImages (None: the demo manifest, read when loaded)
    calib_source: str
    calib_sha256: str | None
    budget: str | None
    seed: int
    holdout: object = None  # LabeledImages, agreement budget only
    holdout_sha256: str | None = None
    eval_source: Path | None = None  # labels budget (None with the demo: its digits val split)
    source_fingerprint: str | None = None  # the whole calibration source's listing
    source_images: int | None = None

    def calib_paths(self) -> list[str]:
        return [Path(p).as_posix() for p, _ in self.calib.items] if self.calib is not None else []


def _sizes(n: int, classes: int, opts, share: float = 1.0) -> tuple[int, int]:
    """(calibration, held-out) image counts out of a source of ``n`` images, at most ``share`` of them
    (see :func:`plan_int8_data`)."""
    from volo_deploy.data.sampler import default_calib_size

    usable = int(n * share)
    hold = opts.eval_size or min(DEFAULT_HOLDOUT, max(MIN_HOLDOUT, usable // 4))
    calib = opts.calib_size or min(default_calib_size(classes), usable - hold)
    if calib + hold > usable or calib < (1 if opts.calib_size else MIN_CALIB):
        of = f" (INT8 may take {share:.0%} of them)" if share < 1 else ""
        raise DataError(
            f"--calib-data {opts.calib_data}: {n} images{of}; INT8 without --eval-data needs {max(calib, MIN_CALIB)} to "
            f"calibrate plus {hold} held out to check agreement with FP32 (disjoint): add images, lower "
            "--calib-size/--eval-size, or pass labeled --eval-data"
        )
    return calib, hold


def split_holdout(data, opts, hold: bool = True, share: float = 1.0):
    """(calibration manifest, held-out manifest or None): disjoint stratified draws from ``data``, seeded
    with ``opts.seed`` (calibration) and ``opts.seed + 1`` (held-out, from the images left), together at
    most ``share`` of ``data``."""
    from volo_deploy.data.layouts import LabeledImages, scan_images
    from volo_deploy.data.sampler import default_calib_size, sample_subset

    if hold:
        calib_n, hold_n = _sizes(len(data), len(data.classes), opts, share)
    else:
        calib_n, hold_n = min(opts.calib_size or default_calib_size(len(data.classes)), int(len(data) * share)), 0
    listing = scan_images(data.root)
    cm = sample_subset(data, total=calib_n, seed=opts.seed, min_per_class=0, listing=listing)
    if not hold:
        return cm, None
    taken = {p for p, _ in cm.items}
    rest = LabeledImages(data.root, [(p, lab) for p, lab in data.items if Path(p).as_posix() not in taken],
                         list(data.classes), data.layout, list(data.notes))
    return cm, sample_subset(rest, total=hold_n, seed=opts.seed + 1, min_per_class=0, listing=listing)


def _split(data, opts) -> tuple[object, str, object, str]:
    """(calibration subset, its hash, held-out subset, its hash) of :func:`split_holdout`."""
    from volo_deploy.data.sampler import subset_images

    cm, hm = split_holdout(data, opts)
    return subset_images(cm, data.root), cm.content_hash(), subset_images(hm, data.root), hm.content_hash()


def _unlabeled(src: Path):
    """Every image under ``src`` (no labels: one class), or None when it holds none."""
    from volo_deploy.data.layouts import LabeledImages, scan_images

    files = scan_images(src, sizes=False)
    if not files:
        return None
    return LabeledImages(src, [(Path(p), 0) for p, _ in files], ["unlabeled"], "unlabeled",
                         ["no labels: every image under the folder"])


def _open_calib(opts):
    """The calibration source of ``opts`` opened (listed), errors naming --calib-data. A folder no layout
    matches (e.g. a flat folder of images) is read unlabeled: calibration and agreement need no labels."""
    from volo_deploy.data.layouts import matching_layouts

    src = Path(opts.calib_data)
    if not src.exists():
        raise DataError(f"--calib-data {src}: not found")
    try:
        if src.is_dir() and opts.calib_layout is None:
            try:
                matching_layouts(src)
            except DataError:
                data = _unlabeled(src)
                if data is not None:
                    return data, None
        return _open_source(src, opts.calib_layout)
    except DataError as exc:
        raise DataError(f"--calib-data {src}: {str(exc).replace('Pass --layout', 'Pass --calib-layout')}") from None


def _check_eval(opts) -> None:
    from volo_deploy.data.dataset import open_images

    src = Path(opts.eval_data)
    if not src.exists():
        raise DataError(f"--eval-data {src}: not found")
    try:
        open_images(src)
    except DataError as exc:
        raise DataError(f"--eval-data {src}: {exc}") from None


def plan_int8_data(opts, demo: bool) -> Int8Data:
    """Which images calibrate and which check the budget, decided from listings alone (fast, no model,
    no decoding): refuses missing or too small data before any export work, naming the flag to pass.

    ``demo``: the bundled demo model (it ships a calibration manifest and a labeled val split). Without
    labeled ``--eval-data`` the held-out slice holds ``--eval-size`` images (default ``n // 4`` kept within
    50..200) and calibration ``--calib-size`` (default 300-1000 by class count, at most the rest).
    """
    from volo_deploy.data import sampler

    kind = opts.budget_kind(demo)
    if opts.eval_data is not None:
        _check_eval(opts)
    if opts.calib_data is None:
        if not demo:
            raise BadInputError(
                "INT8 of this checkpoint needs calibration images: pass --calib-data DIR (e.g. an ImageNet "
                "train/ folder; the accuracy budget then uses a held-out slice of it unless --eval-data is given)"
            )
        return Int8Data(None, f"demo manifest {sampler.DEMO_MANIFEST_NAME}", None, kind, opts.seed)
    data, sha = _open_calib(opts)
    fp = sampler.paths_fingerprint([Path(p).as_posix() for p, _ in data.items])
    if kind == "agreement":
        calib, csha, hold, hsha = _split(data, opts)
        return Int8Data(calib, str(opts.calib_data), csha, kind, opts.seed, hold, hsha, None, fp, len(data))
    size = opts.calib_size or (None if sha is not None else sampler.default_calib_size(len(data.classes)))
    calib, sub = _subset(data, size, opts.seed)
    return Int8Data(calib, str(opts.calib_data), sub or sha, kind, opts.seed, None, None, opts.eval_data, fp,
                    len(data))


def load_int8_data(cfg, plan: Int8Data, opts) -> tuple[ImageSet, ImageSet | None]:
    """(calibration images, budget images or None) of ``plan``, decoded for ``cfg``."""
    if plan.calib is None:
        calib = calibration_set(cfg, None, opts.calib_size, opts.seed)
    else:
        calib = _load(cfg, plan.calib, plan.calib_source, plan.calib_sha256, "calibration images")
    if plan.budget == "agreement":
        return calib, _load(cfg, plan.holdout, f"held-out slice of {plan.calib_source}", plan.holdout_sha256,
                            "held-out images")
    if plan.budget == "labels":
        return calib, eval_set(cfg, plan.eval_source, opts.eval_size or DEFAULT_EVAL_SIZE)
    return calib, None


def describe_plan(plan: Int8Data, calib: ImageSet, budget_set: ImageSet | None) -> dict:
    """The manifest's ``int8_data`` section: where each image set came from, and the budget kind."""
    out = {
        "budget": plan.budget,
        "seed": plan.seed,
        "calibration": {**calib.describe(), "source_images": plan.source_images,
                        "source_fingerprint": plan.source_fingerprint,
                        "items": plan.calib_paths()},
    }
    if budget_set is not None:
        where = "held-out slice of the calibration source, disjoint from the calibration images" \
            if plan.budget == "agreement" else "labeled eval data"
        out["budget_images"] = {**budget_set.describe(), "what": where,
                                "items": [Path(p).as_posix() for p, _ in plan.holdout.items]
                                if plan.holdout is not None else None}
    return out


def is_bundled_demo(checkpoint: str | Path | None, model_name: str | None = None) -> bool:
    """Whether a CLI run uses the bundled demo model (no checkpoint, or the demo's own file), decided
    without reading the checkpoint (fast: the CLIs refuse missing INT8 data before loading anything)."""
    import volo_deploy

    demo = Path(volo_deploy.__file__).resolve().parent / "assets" / "volo_demo_64.safetensors"
    if checkpoint is None:
        return model_name in (None, "volo_demo", "volo_demo_64")
    try:
        return Path(checkpoint).resolve() == demo
    except OSError:
        return False
