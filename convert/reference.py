"""``nerveseg convert reference``: build the benchmark's classic U-Net into the bench cache (workstation).

`nerveseg bench` compares the model under test with a classic 4-skip U-Net in float32 of the same input
size, preprocessing and base filters (`edge.bench.models.classic_unet_plan` says which, and under which
file name). Building it needs TensorFlow, which the device never imports, so it is this explicit step on a
workstation; the benchmark only looks for the file:

    nerveseg convert reference [--model M.tflite] [--filters N] [--out DIR] [--force]

``--model``: the model under test whose input size and preprocessing the reference copies (default: the
shipped model). ``--filters``: base filters (default: the model's own; the original U-Net design has 64). ``--out``:
the folder to write into (default: the bench cache, ``$XDG_CACHE_HOME/nerveseg/bench`` or
``~/.cache/nerveseg/bench``); for a box without TensorFlow, build into a folder and copy the ``.tflite`` and
its ``.yaml`` into that box's cache. A model already there is kept unless ``--force``. The weights are
random (seed 0): only timing is measured with it.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from edge.bench.models import ClassicPlan, cache_dir, classic_unet_plan
from edge.errors import ConfigError, ModelError
from edge.models import default_model_path
from edge.spec import load_spec

logger = logging.getLogger(__name__)


def _build(plan: ClassicPlan, out: Path) -> None:
    """Build ``plan``'s network with random weights and write it (float32) and its spec to ``out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from convert.tflite import to_tflite
    from train.models import build_unet, count_macs

    keras.utils.set_random_seed(plan.seed)
    opts = dict(plan.builder, input_shape=tuple(plan.builder["input_shape"]))
    model = build_unet(name=f"classic_unet_f{plan.filters}", **opts)
    prov = dict(plan.spec.provenance, params=int(model.count_params()), macs=int(count_macs(model)))
    prov.update(tensorflow=tf.__version__, keras=keras.__version__)
    to_tflite(model, out, "float32", None, plan.spec.model_copy(update={"provenance": prov}))


def build_reference(
    model_path: str | Path | None = None, base_filters: int | None = None, root: Path | None = None,
    force: bool = False,
) -> tuple[Path, bool]:
    """Build the classic U-Net for ``model_path`` (default: the shipped model) into ``root`` (default: the
    bench cache). Returns ``(path, built)``: ``built`` False when a usable copy was already there.

    Raises `ModelError` (the model under test or its spec), `ConfigError` (an input size 4 poolings cannot
    take). Needs TensorFlow and the train package.
    """
    ref_path = Path(model_path).expanduser() if model_path else default_model_path()
    if not ref_path.is_file():
        raise ModelError(f"model file {ref_path} not found")
    reference = load_spec(ref_path)
    try:
        plan = classic_unet_plan(reference, base_filters, root)
    except ValueError as e:
        raise ConfigError("<command line>", [f"--model {ref_path}: {e}"]) from None
    out = plan.path
    if out.is_file() and not force:
        try:
            load_spec(out)
            return out, False
        except ModelError as e:
            logger.warning("the classic U-Net in the cache is unusable (%s): building it again", e)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out.parent) as tmp:
        tmp_out = Path(tmp) / out.name
        logger.info("building the classic U-Net (%d base filters) -> %s", plan.filters, out)
        _build(plan, tmp_out)
        # The spec first, then the model: an interrupted pair fails its hash check and is built again.
        os.replace(tmp_out.with_suffix(".yaml"), out.with_suffix(".yaml"))
        os.replace(tmp_out, out)
    logger.info("classic U-Net built in %.0f s", time.monotonic() - t0)
    return out, True


def cmd_reference(args: argparse.Namespace) -> int:
    from edge.plugin import setup_logging

    setup_logging(args.log_level or "WARNING")
    if args.filters is not None and not 1 <= args.filters <= 256:
        raise ConfigError("<command line>", [f"--filters: got {args.filters}: must be 1 to 256"])
    out, built = build_reference(args.model, args.filters, Path(args.out).expanduser() if args.out else None,
                                 args.force)
    spec = load_spec(out)
    what = "built" if built else "already there (--force builds it again)"
    print(f"nerveseg convert reference: {out} {what}")
    print(f"  {spec.name}: float32, {spec.preprocess.width}x{spec.preprocess.height}, "
          f"{spec.provenance.get('macs', 0) / 1e6:.0f} MMAC, RANDOM weights (for timing only)")
    if args.out:
        print(f"  copy it and {out.with_suffix('.yaml').name} into the bench cache of the box to measure "
              f"({cache_dir()} here): nerveseg bench looks for it there")
    else:
        print("  nerveseg bench finds it there (--model classic-unet, or by default)")
    return 0


def register_reference(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reference`` under ``nerveseg convert``."""
    from edge.plugin import common_options

    p = subparsers.add_parser(
        "reference",
        parents=[common_options()],
        help="build the benchmark's classic float32 U-Net (random weights) into the bench cache",
        description="Build the classic 4-skip U-Net that `nerveseg bench` compares the model under test with: "
        "float32, same input size, preprocessing and base filters, random weights. Written into the bench "
        "cache, where the benchmark looks for it.",
    )
    p.add_argument("--model", help="the model under test it must match (default: the shipped model)")
    p.add_argument("--filters", type=int, metavar="N",
                   help="base filters (default: the model's own; the original U-Net design has 64)")
    p.add_argument("--out", metavar="DIR",
                   help="folder to write into (default: the bench cache, $XDG_CACHE_HOME/nerveseg/bench)")
    p.add_argument("--force", action="store_true", help="build it again even when a usable copy is there")
    p.set_defaults(func=cmd_reference)
