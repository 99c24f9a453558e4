"""Site adaptation, measured: fine-tune a trained model on N labelled frames of a new site, score its test split.

    python -m train.adapt --init runs/mini-unet-v2/model.keras --data ../shared/data \
        --sizes 0 10 25 50 100 204 --out runs/adapt-usgra [--plot runs/adapt-usgra/curve.png]

Each size N trains ``nerveseg train --init`` (`train.train.train` with ``init``) on the first N frames
(evenly spread) of usgra-seg's ``train`` split, the same number of draws for every N (``--draws``, at a
lower learning rate), then scores the fine-tuned Keras model on the ``test`` split with `train.evaluate`
(the bedside preprocessing; at the spec's presence threshold and ungated). N = 0 is the model as given.
Writes ``curve.json`` (Dice on nerve frames, sensitivity, seconds per fine-tune) and, with matplotlib
installed (a workstation extra, never on the device), a PNG of the curve.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def fine_tune_config(init: Path, n: int, out_dir: Path, data_root: Path, draws: int, lr: float, batch: int):
    from edge.spec import load_spec
    from train.train import TrainConfig

    spec = load_spec(init, verify_hash=False)
    opts = (spec.provenance or {}).get("options") or {}
    epochs = 4
    return TrainConfig.model_validate({
        "name": f"n{n:03d}",
        "out_dir": str(out_dir),
        "init": str(init),
        "data": {"root": str(data_root), "sources": {"kaggle": None, "usgra": {"limit": n}},
                 "epoch_size": max(batch, draws // epochs)},
        "model": {k: opts[k] for k in ("skips", "base_filters", "batch_norm", "conv", "upsample") if k in opts},
        "preprocess": spec.preprocess.model_dump(),
        "augment": {"flip": False},
        "optim": {"epochs": epochs, "batch_size": batch, "lr": lr},
    })


def run_curve(init: Path, data_root: Path, sizes: list[int], out_dir: Path, draws: int = 1024, lr: float = 3e-4,
              batch: int = 16) -> dict[str, Any]:
    from train.evaluate import evaluate
    from train.train import train

    test = data_root / "usgra-seg"
    rows = []
    for n in sizes:
        t0 = time.monotonic()
        if n == 0:
            model = init
            seconds = 0.0
        else:
            cfg = fine_tune_config(init, n, out_dir, data_root, draws, lr, batch)
            res = train(cfg)
            model = Path(res["run_dir"]) / "model.keras"
            seconds = time.monotonic() - t0
        gated = evaluate(model, test, presence_threshold=None, split="test", n_boot=10)
        ungated = evaluate(model, test, presence_threshold=0.0, split="test", n_boot=10)
        rows.append({
            "frames": n,
            "mean_dice_positive": round(gated["mean_dice_positive"], 4),
            "mean_dice_positive_ungated": round(ungated["mean_dice_positive"], 4),
            "presence_sensitivity": round(gated["presence_sensitivity"], 4),
            "presence_threshold": gated["thresholds"]["presence"],
            "fine_tune_seconds": round(seconds, 1),
            "model": str(model),
        })
        logger.info("N=%d: Dice %.3f (ungated %.3f), %.0f s", n, rows[-1]["mean_dice_positive"],
                    rows[-1]["mean_dice_positive_ungated"], seconds)
    out = {"init": str(init), "test": "usgra-seg test split (40 frames, never trained on)", "draws": draws,
           "lr": lr, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curve.json").write_text(json.dumps(out, indent=2))
    return out


def plot_curve(curve: dict[str, Any], png: Path) -> Path | None:
    """The curve as a PNG (matplotlib; None with a warning when it is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (pip install nerveseg[train]): no plot")
        return None
    rows = curve["rows"]
    n = [r["frames"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot(n, [r["mean_dice_positive"] for r in rows], "o-", label="at the spec's presence threshold")
    ax.plot(n, [r["mean_dice_positive_ungated"] for r in rows], "s--", label="mask alone (ungated)")
    ax.set_xlabel("labelled frames of the new site fine-tuned on")
    ax.set_ylabel("Dice on nerve frames, test split")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Site adaptation on usgra-seg (Mindray TE7)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.adapt", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="the trained model.keras to adapt (spec beside it)")
    p.add_argument("--data", default="../shared/data", help="shared data folder (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[0, 10, 25, 50, 100, 204])
    p.add_argument("--draws", type=int, default=1024, help="training draws per fine-tune (default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--out", required=True, help="folder for the fine-tuned runs and curve.json")
    p.add_argument("--plot", help="write the curve as PNG here (default: OUT/curve.png)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    curve = run_curve(Path(args.init), Path(args.data), args.sizes, Path(args.out), args.draws, args.lr)
    png = plot_curve(curve, Path(args.plot) if args.plot else Path(args.out) / "curve.png")
    print("frames  Dice+ (gated)  Dice+ (ungated)  sens   fine-tune s")
    for r in curve["rows"]:
        print(f"{r['frames']:>6}  {r['mean_dice_positive']:>13.3f}  {r['mean_dice_positive_ungated']:>15.3f}  "
              f"{r['presence_sensitivity']:.3f}  {r['fine_tune_seconds']:>11.1f}")
    if png:
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
