"""volo-bench's INT8 images: ``--calib-data`` as given, the demo's own manifest, or images of ``--data``
set aside for calibration (and the agreement budget's held-out slice) and left out of every row's
evaluation. Decided from listings before any model is loaded, so missing data is refused at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volo_deploy.errors import BadInputError, DataError

MANIFEST_NAME = "int8_calibration.json"
#: At most this share of --data is set aside for INT8 (the rest is what every row is evaluated on).
DATA_SHARE = 0.5


@dataclass
class BenchInt8:
    """What every INT8 case of a run gets, and what the evaluation must leave out."""

    opts: Any = None  # Int8Options for the exports (None: no INT8 case)
    excluded: frozenset[str] = frozenset()  # --data images (posix paths relative to its root) not evaluated
    manifest: Any = None  # SubsetManifest of the excluded images, written into the run folder by write()
    info: dict[str, Any] = field(default_factory=dict)  # the report's data.int8_calibration

    def write(self) -> None:
        """Write the set-aside images' manifest where the INT8 exports read it (``opts.calib_data``)."""
        if self.manifest is not None:
            from volo_deploy.data.sampler import write_manifest

            write_manifest(self.manifest, Path(self.opts.calib_data))

    def note(self) -> str | None:
        if not self.excluded:
            return None
        i = self.info
        return (f"INT8 calibration: {i['calibration_images']} images of --data (+ {i['held_out_images']} held out "
                f"for the agreement budget) left out of every row's evaluation ({i['fingerprint'][:19]}...)")


def plan_bench_int8(cfg, cases, run_dir: Path) -> BenchInt8:
    """The INT8 images of a bench run (see the module docstring); BadInputError/DataError when there are none."""
    from volo_deploy.quant.data import is_bundled_demo, plan_int8_data
    from volo_deploy.quant.options import Int8Options

    if not any(p == "int8" for _, p in cases):
        return BenchInt8()
    opts = cfg.int8 or Int8Options()
    demo = is_bundled_demo(cfg.checkpoint, cfg.model)
    if opts.calib_data is not None or demo:
        plan_int8_data(opts, demo)  # refused now if missing or too small
        return BenchInt8(opts)
    if cfg.data is None:
        raise BadInputError("INT8 rows of this checkpoint need images: pass --calib-data DIR, or --data (some of "
                            "its images then calibrate and are left out of the evaluation), or drop int8 from "
                            "--precisions")
    return _from_data(cfg, opts, run_dir)


def _from_data(cfg, opts, run_dir: Path) -> BenchInt8:
    """Calibration (and held-out) images drawn from ``--data``: the exports read them as a manifest."""
    from volo_deploy.data.dataset import open_images
    from volo_deploy.harness.data import items_fingerprint
    from volo_deploy.quant.data import split_holdout

    src = Path(cfg.data)
    if not src.exists():
        raise BadInputError(f"--data {src}: not found")
    data = open_images(src, layout=cfg.data_layout, root=cfg.data_root)
    hold = opts.budget_kind(demo=False) == "agreement"
    try:
        cm, hm = split_holdout(data, dataclasses.replace(opts, calib_data=src), hold=hold, share=DATA_SHARE)
    except DataError as exc:  # the images come from --data here: say so, and name the other way
        raise DataError(f"{str(exc).replace('--calib-data', '--data', 1)}; or pass --calib-data DIR") from None
    items = sorted({*cm.items, *(hm.items if hm is not None else ())})
    manifest = dataclasses.replace(cm, items=items, size=len(items), notes=[*cm.notes, "volo-bench: set aside from --data"])
    path = run_dir / MANIFEST_NAME
    exp = dataclasses.replace(opts, calib_data=path, calib_layout=None, calib_size=len(cm.items),
                              eval_size=len(hm.items) if hm is not None else opts.eval_size)
    info = {"source": str(src), "manifest": str(path), "calibration_images": len(cm.items),
            "held_out_images": len(hm.items) if hm is not None else 0, "seed": opts.seed,
            "fingerprint": items_fingerprint(items), "excluded_from_evaluation": True}
    return BenchInt8(exp, frozenset(p for p, _ in items), manifest, info)
