"""The model shipped with the runtime: ``nerveseg.tflite`` and its spec ``nerveseg.yaml`` beside this file.

Until a trained model exists it is an UNTRAINED mini-U-Net (random weights,
``untrained: true`` in its spec, so the overlay says so), made by
``python -m convert.make_untrained --out edge/models/nerveseg.tflite``.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL = "nerveseg.tflite"


def default_model_path() -> Path:
    """Path of the shipped .tflite (its sidecar spec is the same path with ``.yaml``)."""
    return Path(__file__).resolve().parent / SHIPPED_MODEL
