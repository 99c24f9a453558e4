"""What a U-Net variant costs on this machine: parameters, MACs and TFLite inference time.

    python -m convert.variant_costs                     # the variant costs in docs/results.md
    python -m convert.variant_costs --variant mini-f8 --variant classic-f16 --float32

Each variant is built by `train.models.build_unet` with random weights (inference time does
not depend on the weight values), converted by `convert.tflite.to_tflite` (int8 calibrated on
the real kaggle-bp full-resolution frames, or float32) and timed through the bedside
`ModelRunner.infer` at 1 and 2 threads (`convert.publish.latency`, which names the CPU).
Prints one JSON line per variant and quantisation; needs the `train` extra (TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

#: name -> build_unet options (96x128x1 input, BatchNorm, batch 1 as shipped).
VARIANTS: dict[str, dict[str, Any]] = {
    "mini-f8": {"base_filters": 8, "skips": 3},
    "mini-f10": {"base_filters": 10, "skips": 3},
    "mini-f12": {"base_filters": 12, "skips": 3},
    "mini-f16": {"base_filters": 16, "skips": 3},
    "classic-f8": {"base_filters": 8, "skips": 4},
    "classic-f16": {"base_filters": 16, "skips": 4},
    "mini-f16-separable": {"base_filters": 16, "skips": 3, "conv": "separable"},
    "mini-f16-bilinear": {"base_filters": 16, "skips": 3, "upsample": "bilinear"},
}


def variant_cost(name: str, quantization: str, frames: list | None, work: Path, calls: int = 300) -> dict[str, Any]:
    """Build, convert and time one variant; the row printed for it."""
    import keras

    from convert.make_untrained import PREPROCESS
    from convert.publish import latency
    from convert.tflite import to_tflite
    from edge.spec import ModelSpec
    from train.models import build_unet, count_macs

    opts = {"conv": "plain", "upsample": "transpose", **VARIANTS[name]}
    keras.utils.set_random_seed(0)
    model = build_unet(input_shape=(96, 128, 1), batch_norm=True, batch_size=1, **opts)
    path = work / f"{name}-{quantization}.tflite"
    spec = ModelSpec(name=name, untrained=True, quantization=quantization, preprocess=PREPROCESS,
                     provenance={"what": "random weights, for timing only", "options": opts})
    to_tflite(model, path, quantization, frames if quantization == "int8" else None, spec)
    t = latency(path, calls=calls)
    return {
        "variant": name, "quantization": quantization, "options": opts, "params": int(model.count_params()),
        "macs": count_macs(model), "size_kb": round(path.stat().st_size / 1024, 1),
        "ms_1_thread": t["1_thread_ms"]["p50"], "ms_2_threads": t["2_thread_ms"]["p50"], "machine": t["machine"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.variant_costs", description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                   help="a variant to measure (repeatable; default: all)")
    p.add_argument("--float32", action="store_true", help="also time each variant in float32")
    p.add_argument("--calls", type=int, default=300, help="timed calls per thread count (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None, help="shared data folder (default: $NERVESEG_DATA or "
                   "../shared/data); its kaggle-bp full-resolution frames calibrate int8")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from convert.make_untrained import PREPROCESS, default_data_dir
    from convert.tflite import representative_frames

    fullres = (args.data or default_data_dir()) / "kaggle-bp" / "fullres"
    if not (fullres / "images").is_dir():
        print(f"error: kaggle-bp full-resolution frames not found under {fullres.parent.parent} (use --data)")
        return 2
    frames = representative_frames(fullres / "images", PREPROCESS, masks_dir=fullres / "masks")
    with tempfile.TemporaryDirectory(prefix="nerveseg-variants-") as tmp:
        for name in args.variant or list(VARIANTS):
            for q in ("int8", "float32") if args.float32 else ("int8",):
                print(json.dumps(variant_cost(name, q, frames, Path(tmp), args.calls)), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
