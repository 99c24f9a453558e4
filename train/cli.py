"""`nerveseg train`: registered through the ``nerveseg.commands`` entry point (setup.cfg).

TensorFlow is imported only when the command runs, so `nerveseg --help` works on
a device without it.
"""

from __future__ import annotations

import argparse
import json
import logging

logger = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    from edge.plugin import setup_logging
    from train.train import load_train_config, train

    setup_logging(args.log_level or "INFO")
    cfg = load_train_config(
        args.config,
        **{
            "data.fold": args.fold,
            "data.root": args.data,
            "optim.epochs": args.epochs,
            "name": args.name,
            "out_dir": args.out_dir,
            "init": args.init,
        },
    )
    if args.summarise:
        from train.cv import summarise_finished

        summary = summarise_finished(cfg)
        print(json.dumps({"folds_finished": summary["folds_finished"], "mean": summary["mean"],
                          "operating_point": summary["presence_operating_point"]["chosen"]}, indent=2))
        print(f"cross-validation summary: {summary['path']}")
        return 0
    if args.cv:
        from train.cv import run_cv

        summary = run_cv(cfg, resume=args.resume)
        print(json.dumps(summary["mean"], indent=2))
        print(f"cross-validation summary: {summary['path']}")
        return 0
    result = train(cfg, resume=args.resume)
    print(json.dumps({k: v for k, v in result.items() if k != "validation"}, indent=2))
    if "validation" in result:
        v = result["validation"]
        print(
            f"validation (inference mode, last epoch; best {result['best_epoch']}): kaggle {v['kaggle_score']:.3f}, "
            f"dice+ {v['mean_dice_positive']:.3f}, sensitivity {v['presence_sensitivity']:.3f}, "
            f"specificity {v['presence_specificity']}"
        )
    print(f"model: {result['run_dir']}/model.keras (spec model.yaml beside it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from edge.plugin import common_options

    t = sub.add_parser("train", parents=[common_options()],
                       help="train a model on real frames, subject-wise (needs the 'train' extra)")
    t.add_argument("--config", help="training YAML (default: the built-in TrainConfig defaults; the shipped model's "
                   "recipe is train/configs/mini-unet-f8.yaml)")
    t.add_argument("--fold", type=int, help="hold out this fold of subjects for validation (overrides data.fold)")
    t.add_argument("--cv", action="store_true", help="train every fold in turn and summarise (k-fold over subjects)")
    t.add_argument("--summarise", action="store_true", help="write cv.json (scores, presence operating point) from "
                   "the folds already trained with --fold K, without training more")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last.keras")
    t.add_argument("--epochs", type=int, help="override optim.epochs")
    t.add_argument("--data", help="override data.root (folder with kaggle-bp/)")
    t.add_argument("--name", help="override name (the run folder)")
    t.add_argument("--out-dir", help="override out_dir")
    t.add_argument("--init", metavar="MODEL.keras", help="fine-tune this trained model (e.g. on a new site's frames) "
                   "instead of starting from random weights; the config's preprocess must match its spec")
    t.set_defaults(func=cmd_train)
