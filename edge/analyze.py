"""The bedside analysis of one frame, in one place: preprocess -> infer -> temporal rules.

    image (full video-out frame) -> ROI crop -> gray -> denoise -> resize -> normalise
      -> mirror as the site profile says -> network -> mask mirrored back -> presence hysteresis
      and mask smoothing -> Decision

The live loop (`edge.pipeline.Pipeline`), review's re-run of another model (`edge.review`), the
live scorer (`nerveseg eval --live`, through the loop) and the benchmark (through the loop) all use
this class, and the preprocessing it runs is `edge.preprocess.preprocess`, the function training
imports: what the network sees at the bedside is what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.plan import PresenceRules
from edge.preprocess import Lap, preprocess
from edge.runner import ModelRunner
from edge.spec import PreprocessSpec
from edge.types import Decision, Result, Roi


def _flip_index(flips: tuple[bool, bool]) -> tuple[slice, slice]:
    """Index that mirrors an (H, W) array: flips = (horizontal, vertical)."""
    return slice(None, None, -1 if flips[1] else 1), slice(None, None, -1 if flips[0] else 1)


def network_input(image: np.ndarray, roi: Roi | None, spec: PreprocessSpec, flips: tuple[bool, bool] = (False, False),
                  out: np.ndarray | None = None, lap: Lap | None = None,
                  flipped_out: np.ndarray | None = None) -> np.ndarray:
    """The float32 (H, W) array the network is given for ``image``: `edge.preprocess.preprocess`, then
    mirrored as ``flips`` (horizontal, vertical) say. ``out`` / ``flipped_out``: buffers to reuse for the
    preprocessed and the mirrored array (None: new arrays); the one returned is the last step's."""
    x = preprocess(image, roi, spec, out=out, lap=lap)
    if not any(flips):
        return x
    if flipped_out is None:
        return np.ascontiguousarray(x[_flip_index(flips)])
    np.copyto(flipped_out, x[_flip_index(flips)])
    return flipped_out


@dataclass(frozen=True)
class Analysis:
    """One analysed frame. model_input: the network's input (owned by the `Analyzer`, reused for the next
    frame: copy it to keep it); result: the network's output, mask in the machine's orientation;
    decision: the smoothed verdict after the temporal rules."""

    model_input: np.ndarray
    result: Result
    decision: Decision


class Analyzer:
    """Preprocess, infer and apply the temporal rules to a stream of frames. One per stream, one thread.

    runner: the loaded model. rules: the settled presence rules (`edge.plan.RunPlan.rules`).
    roi: where the ultrasound image lies in the frames it will get (None: the whole frame).
    flips: (horizontal, vertical) mirroring of the network input (site profile); the mask is
    mirrored back right after inference, so smoothing, overlay and screen stay in the machine's
    orientation.
    """

    def __init__(self, runner: ModelRunner, rules: PresenceRules, roi: Roi | None = None,
                 flips: tuple[bool, bool] = (False, False)):
        self.runner = runner
        self.rules = rules
        self.roi = roi
        self.flips = (bool(flips[0]), bool(flips[1]))
        self._flip = _flip_index(self.flips) if any(self.flips) else None
        self.tracker = rules.tracker()
        h, w = runner.input_hw
        self._input = np.zeros((h, w), np.float32)
        self._flipped = np.zeros_like(self._input)

    def model_input(self, image: np.ndarray, lap: Lap | None = None) -> np.ndarray:
        """The network input for ``image`` (float32 (H, W), a buffer this Analyzer reuses)."""
        return network_input(image, self.roi, self.runner.spec.preprocess, self.flips, out=self._input, lap=lap,
                             flipped_out=self._flipped)

    def infer(self, x: np.ndarray) -> Result:
        """Run the network on a model input; the mask comes back in the machine's orientation."""
        result = self.runner.infer(x)
        if self._flip is not None:
            result = Result(np.ascontiguousarray(result.mask[self._flip]), result.p_nerve, result.t_infer_ns)
        return result

    def decide(self, result: Result) -> Decision:
        """Apply the temporal rules (hysteresis, minimum frames, mask smoothing) to the next result."""
        return self.tracker.update(result)

    def analyse(self, image: np.ndarray, lap: Lap | None = None) -> Analysis:
        """All three steps for the next frame of the stream. ``lap(stage)`` is called after each stage
        ("roi_gray", "denoise", "resize", "normalise", "infer", "smooth") for per-stage timing."""
        x = self.model_input(image, lap)
        result = self.infer(x)
        if lap is not None:
            lap("infer")
        decision = self.decide(result)
        if lap is not None:
            lap("smooth")
        return Analysis(x, result, decision)

    def reset(self) -> None:
        """Forget the stream's past (after a gap: no signal, ROI not fitting)."""
        self.tracker.reset()
