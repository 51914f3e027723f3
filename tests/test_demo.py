"""The bundled demo: shipped checkpoint, held-out accuracy, ImageFolder tree, transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from volo_deploy.data.digits import load_digits_arrays, write_digits_tree
from volo_deploy.data.transforms import EvalTransform
from volo_deploy.models import get_config, load_model

DATA = Path(__file__).parent / "data"


def test_demo_checkpoint_reaches_published_held_out_accuracy() -> None:
    model, info = load_model()
    assert info.family == "volo_demo" and info.num_classes == 10 and info.img_size == 64
    images, labels = load_digits_arrays("val")
    tf = EvalTransform.for_config(model.cfg)
    x = torch.from_numpy(np.stack([tf(Image.fromarray(im, mode="L")) for im in images]))
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    top1 = float((pred == labels).mean())
    assert len(labels) == 360
    assert top1 >= 0.97, top1  # README reports 98.33% (354/360)


def test_digits_tree_is_an_imagefolder_with_the_fixed_split(tmp_path) -> None:
    val = write_digits_tree(tmp_path, "val")
    train = write_digits_tree(tmp_path, "train")
    assert sorted(p.name for p in val.iterdir()) == [str(i) for i in range(10)]
    n_val, n_train = len(list(val.glob("*/*.png"))), len(list(train.glob("*/*.png")))
    assert (n_val, n_train) == (360, 1437)
    first_val = np.asarray(Image.open(val / "0" / "digit_0000.png"))
    np.testing.assert_array_equal(first_val, load_digits_arrays("val")[0][0])  # sklearn index 0
    assert not list(tmp_path.glob(".*"))  # no staging leftovers
    img = Image.open(next(val.glob("3/*.png")))
    assert img.size == (8, 8) and img.mode == "L"


def test_eval_transform_equals_timm() -> None:
    golden = np.load(DATA / "golden_transforms.npz")
    rng = np.random.default_rng(7)  # the image of scripts/make_golden_transforms.py
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).resize((400, 300), Image.BILINEAR)
    for name in golden.files:  # crop_pct 0.96, 1.0 and 1.15 (zero padding)
        out = EvalTransform.for_config(get_config(name))(img)
        assert out.shape == (3, get_config(name).img_size, get_config(name).img_size)
        np.testing.assert_allclose(out[:, ::7, ::7], golden[name], atol=1e-6, rtol=0)
