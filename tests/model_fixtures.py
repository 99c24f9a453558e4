"""Fixtures for the model tests: real kaggle-bp frames, a briefly trained mini-U-Net, its TFLite files.

A test module uses them by binding them at module level (pytest finds fixtures by
name in the module's namespace), e.g. ``tflite_models = model_fixtures.tflite_models``.

The trained model is small but not trivial: an 8-filter mini-U-Net at 96x128 (the
shipped architecture at half the width, ~0.1 s a training step here), trained for
80 steps on real frames (~10 s). A random-weight model gives ~0.5 everywhere and
after 40 steps nothing crossed 0.5, against which an int8-vs-float comparison
proves little; after 80 steps P(nerve) spans 0-1 across frames and the masks
cover a few percent of the image (Dice ~0.5 on the training subjects), so
thresholded masks and presence are both exercised.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.preprocess import preprocess, resize_mask
from edge.spec import ModelSpec, PreprocessSpec

PP = PreprocessSpec(height=96, width=128, filter="median", filter_size=5, filter_at="input", mean=0.0, std=1.0)
# Subject-wise split: train on subjects 1-2 (full-res, the only "no nerve" frames) and 3-16;
# compare float/int8 on frames of subjects 41-47 and unlabeled test frames, never seen in training.
TRAIN_SUBJECTS = (3, 4, 7, 8, 9, 11, 12, 13, 14, 16)
EVAL_SUBJECTS = (41, 42, 43, 44, 45, 46, 47)
FILTERS = 8
TRAIN_STEPS = 80
BATCH = 16
LEARNING_RATE = 3e-3
SEED = 1


# Results of the session fixtures, shared across test modules: pytest registers a fixture bound in several
# modules once per module, so without this the model would be trained once per module that uses it.
_SESSION: dict[str, object] = {}


@dataclass(frozen=True)
class Frames:
    x: np.ndarray  # float32 (N, H, W, 1), preprocessed with PP
    mask: np.ndarray | None  # float32 (N, H, W, 1) in [0, 1], or None (unlabeled)
    present: np.ndarray | None  # float32 (N, 1), 1 = nerve in the mask


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img is not None, f"cannot read {path}"
    return img


def _load(pairs: list[tuple[Path, Path | None]]) -> Frames:
    xs, ms = [], []
    for img, mask in pairs:
        xs.append(preprocess(_read(img), None, PP).copy())
        if mask is not None:
            ms.append(resize_mask(_read(mask), PP.height, PP.width))
    x = np.stack(xs)[..., None]
    if not ms:
        return Frames(x, None, None)
    m = np.stack(ms)[..., None].astype(np.float32)
    present = (m.reshape(len(m), -1).max(axis=1) > 0).astype(np.float32)[:, None]
    return Frames(x, m, present)


def _spaced(rows: list, n: int) -> list:
    idx = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)
    return [rows[i] for i in sorted(set(idx))]


@pytest.fixture(scope="session")
def kaggle_sets(data_dir: Path) -> dict[str, Frames]:
    """Preprocessed kaggle-bp frames, split by subject.

    train: subjects 1-2 full-res (18 with nerve, 37 without) + 6 frames each of TRAIN_SUBJECTS;
    eval: 3 frames each of EVAL_SUBJECTS (all with nerve); unlabeled: Kaggle test frames 1-10;
    calibration: the 55 full-res frames, as used for the shipped model.
    """
    key = f"kaggle_sets:{data_dir}"
    if key not in _SESSION:
        _SESSION[key] = _kaggle_sets(data_dir)
    return _SESSION[key]


def _kaggle_sets(data_dir: Path) -> dict[str, Frames]:
    root = data_dir / "kaggle-bp"
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    small = [r for r in rows if r["variant"].startswith("256x186")]

    def pairs_for(subjects: tuple[int, ...], per_subject: int) -> list[tuple[Path, Path]]:
        out = []
        for s in subjects:
            rs = sorted((r for r in small if int(r["subject"]) == s), key=lambda r: int(r["index"]))
            out += [(root / r["path"], root / r["mask_path"]) for r in _spaced(rs, per_subject)]
        return out

    full = root / "fullres"
    full_pairs = [(p, full / "masks" / f"{p.stem}_mask.png") for p in sorted((full / "images").glob("*.png"))]
    test_imgs = sorted((full / "unlabeled_test").glob("*.png"), key=lambda p: int(p.stem))[:10]
    return {
        "train": _load(full_pairs + pairs_for(TRAIN_SUBJECTS, 6)),
        "eval": _load(pairs_for(EVAL_SUBJECTS, 3)),
        "unlabeled": _load([(p, None) for p in test_imgs]),
        "calibration": _load(full_pairs),  # 18 with nerve + 37 without, as for the shipped model
    }


def _dice_bce(y, p):
    """Soft Dice + BCE per sample: plain BCE left every pixel below 0.5 after this few steps."""
    from keras import losses, ops

    inter = ops.sum(y * p, axis=(1, 2, 3))
    total = ops.sum(y, axis=(1, 2, 3)) + ops.sum(p, axis=(1, 2, 3))
    return 1.0 - (2.0 * inter + 1.0) / (total + 1.0) + ops.mean(losses.binary_crossentropy(y, p), axis=(1, 2))


@pytest.fixture(scope="session")
def trained_unet(kaggle_sets):
    """keras.Model (batch None, FILTERS filters, 3 skips, 96x128) after TRAIN_STEPS steps of Adam on the train set."""
    if "trained_unet" not in _SESSION:
        _SESSION["trained_unet"] = _train(kaggle_sets)
    return _SESSION["trained_unet"]


def _train(kaggle_sets: dict[str, Frames]):
    import keras

    from train.models import build_unet

    keras.utils.set_random_seed(SEED)
    model = build_unet(input_shape=(PP.height, PP.width, 1), base_filters=FILTERS, skips=3, name="test_unet")
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss={"mask": _dice_bce, "nerve_present": "binary_crossentropy"},
    )
    tr = kaggle_sets["train"]
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, len(tr.x), size=TRAIN_STEPS * BATCH)
    model.fit(
        tr.x[idx],
        {"mask": tr.mask[idx], "nerve_present": tr.present[idx]},
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    return model


def make_spec(name: str = "test-unet", quantization: str = "float32") -> ModelSpec:
    return ModelSpec(name=name, quantization=quantization, preprocess=PP)


@pytest.fixture(scope="session")
def tflite_models(trained_unet, kaggle_sets, tmp_path_factory) -> dict[str, Path]:
    """``{"float32": path, "int8": path}``: `trained_unet` converted, each with its spec beside it."""
    if "tflite_models" in _SESSION:
        return _SESSION["tflite_models"]
    from convert.tflite import to_tflite

    out = tmp_path_factory.mktemp("tflite")
    calib = list(kaggle_sets["calibration"].x[:, None])  # (1, H, W, 1) each
    _SESSION["tflite_models"] = {
        "float32": to_tflite(trained_unet, out / "unet_f32.tflite", "float32", None, make_spec()),
        "int8": to_tflite(trained_unet, out / "unet_int8.tflite", "int8", calib, make_spec(quantization="int8")),
    }
    return _SESSION["tflite_models"]


@pytest.fixture(scope="session")
def keras_model_file(trained_unet, tmp_path_factory) -> Path:
    """`trained_unet` saved as ``unet.keras`` with its sidecar spec ``unet.yaml``, as training leaves a model.

    Read-only for tests: copy it (with its .yaml) before changing anything beside it.
    """
    if "keras_model_file" in _SESSION:
        return _SESSION["keras_model_file"]
    from edge.spec import save_spec

    path = tmp_path_factory.mktemp("keras") / "unet.keras"
    trained_unet.save(path)
    spec = make_spec().model_copy(
        update={
            "provenance": {
                "builder": "train.models.build_unet",
                "options": {"base_filters": FILTERS, "skips": 3, "input_shape": [PP.height, PP.width, 1]},
                "data": {"train_subjects": [1, 2, *TRAIN_SUBJECTS], "steps": TRAIN_STEPS, "seed": SEED},
            }
        }
    )
    save_spec(spec, path)
    _SESSION["keras_model_file"] = path
    return path


@pytest.fixture(scope="session")
def untrained_model(data_dir: Path, tmp_path_factory) -> Path:
    """An untrained int8 mini-U-Net made by `convert.make_untrained` (the placeholder kind of model)."""
    if "untrained_model" not in _SESSION:
        from convert.make_untrained import make_untrained

        out = tmp_path_factory.mktemp("untrained") / "untrained.tflite"
        _SESSION["untrained_model"] = make_untrained(out, data_dir, seed=0)
    return _SESSION["untrained_model"]
