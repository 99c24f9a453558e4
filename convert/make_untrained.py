"""Make the shipped UNTRAINED model: a random-weight mini-U-Net, int8, with its spec.

    python -m convert.make_untrained --out edge/models/nerveseg.tflite

It lets the demo and the device run end to end before a trained model exists.
Same builder and converter as a trained model: 16 base filters,
3 skips, BatchNorm, 96x128 input, batch 1, fixed seed; int8 calibrated on the
real kaggle-bp full-resolution frames (18 with a nerve, 37 without) through
the spec's preprocessing (median 5 at input size, mean 0, std 1). The spec says
``untrained: true`` so the overlay marks its output as meaningless.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path

from edge.errors import NervesegError
from edge.paths import shared_data_dir
from edge.spec import ModelSpec, PreprocessSpec

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BUILDER = {
    "input_shape": [96, 128, 1],
    "base_filters": 16,
    "skips": 3,
    "batch_norm": True,
    "conv": "plain",
    "upsample": "transpose",
    "batch_size": 1,
}
PREPROCESS = PreprocessSpec(height=96, width=128, filter="median", filter_size=5, filter_at="input", mean=0.0, std=1.0)


def default_data_dir() -> Path:
    """``$NERVESEG_DATA``, else ``shared/data`` beside the checkout (as the tests look for it)."""
    return shared_data_dir()


def make_untrained(out: Path, data_dir: Path, seed: int = 0, quantization: str = "int8") -> Path:
    """Build, calibrate and write the untrained model to ``out`` (+ ``.yaml``); return ``out``.

    quantization: "int8" (the shipped file) or "float32" (the same weights, for comparisons).
    """
    import keras
    import tensorflow as tf

    from convert.tflite import representative_frames, split_by_nerve, to_tflite
    from train.models import build_unet, count_macs

    fullres = data_dir / "kaggle-bp" / "fullres"
    frames = None
    calibration = "none (float32)"
    if quantization == "int8":
        frames = representative_frames(fullres / "images", PREPROCESS, masks_dir=fullres / "masks")
        pos, neg = split_by_nerve(fullres / "images", fullres / "masks")
        calibration = (
            f"kaggle-bp/fullres/images, all {len(frames)} frames ({len(pos)} with a nerve, {len(neg)} without), "
            "through edge.preprocess with this spec"
        )
    keras.utils.set_random_seed(seed)
    model = build_unet(
        input_shape=tuple(BUILDER["input_shape"]),
        base_filters=BUILDER["base_filters"],
        skips=BUILDER["skips"],
        batch_norm=BUILDER["batch_norm"],
        conv=BUILDER["conv"],
        upsample=BUILDER["upsample"],
        batch_size=BUILDER["batch_size"],
        name="mini_unet_f16_untrained",
    )
    spec = ModelSpec(
        name=f"mini-unet-f{BUILDER['base_filters']}-untrained",
        untrained=True,
        quantization=quantization,
        preprocess=PREPROCESS,
        provenance={
            "what": "UNTRAINED placeholder: random weights, output is meaningless (replace with a trained model)",
            "builder": "train.models.build_unet",
            "builder_options": BUILDER,
            "seed": seed,
            "params": int(model.count_params()),
            "macs": count_macs(model),
            "representative": calibration,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": f"python -m convert.make_untrained --out {out} --seed {seed} --quantization {quantization}",
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    )
    return to_tflite(model, out, quantization, frames, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.make_untrained", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "edge" / "models" / "nerveseg.tflite", help="output .tflite")
    ap.add_argument(
        "--data", type=Path, default=None, help="shared data folder (default: $NERVESEG_DATA or ../shared/data)"
    )
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    ap.add_argument(
        "--quantization", choices=("int8", "float32"), default="int8", help="int8 (shipped) or float32 (for comparison)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = args.data or default_data_dir()
    if args.quantization == "int8" and not (data / "kaggle-bp" / "fullres" / "images").is_dir():
        logger.error("kaggle-bp full-resolution frames not found under %s (use --data)", data)
        return 2
    try:
        out = make_untrained(args.out, data, args.seed, args.quantization)
    except (NervesegError, ValueError) as e:
        logger.error("%s", e)
        return 1
    logger.info("done: %s (%.0f KB)", out, out.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
