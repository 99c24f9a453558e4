"""Build a reference model for the benchmark: ``python -m convert.reference JOB_JSON``.

`nerveseg bench` compares the shipped model with a classic 4-skip U-Net in
float32. Building that needs TensorFlow, which the device side never imports,
so the benchmark runs this module in a child process. JOB_JSON holds:
``builder_options`` (keyword arguments of `train.models.build_unet`, with
``input_shape`` as a list), ``keras_name``, ``seed``, ``spec`` (an
`edge.spec.ModelSpec` as JSON) and ``out`` (the .tflite to write; its spec is
written beside it). The weights are random: only timing is measured.
"""

from __future__ import annotations

import json
import os
import sys


def build(job: dict) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from convert.tflite import to_tflite
    from edge.spec import ModelSpec
    from train.models import build_unet, count_macs

    keras.utils.set_random_seed(job["seed"])
    opts = dict(job["builder_options"], input_shape=tuple(job["builder_options"]["input_shape"]))
    model = build_unet(name=job["keras_name"], **opts)
    spec = ModelSpec.model_validate(job["spec"])
    prov = dict(spec.provenance, params=int(model.count_params()), macs=int(count_macs(model)))
    prov.update(tensorflow=tf.__version__, keras=keras.__version__)
    to_tflite(model, job["out"], "float32", None, spec.model_copy(update={"provenance": prov}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m convert.reference JOB_JSON", file=sys.stderr)
        return 2
    build(json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
