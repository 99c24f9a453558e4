"""The device path on an arm64 CPU: the same frames through the same models, compared with x86.

Run by `.ci/arm64`, once on the host (x86_64) and once under ``qemu-aarch64-static -cpu cortex-a76``
in a Debian bookworm arm64 sysroot (Raspberry Pi OS's base):

    python .ci/arm64_check.py frames DATA OUT.npz        host: pick real frames, decode them once
    python .ci/arm64_check.py outputs FRAMES.npz OUT.npz  either: run both shipped models on them
    python .ci/arm64_check.py compare X86.npz ARM.npz      either: per-frame mask Dice and |dP|, tolerances
    python .ci/arm64_check.py imports                      either: import every module of edge/

The frames are decoded on the host and handed over as arrays, so a difference is the device path's own
(preprocessing in OpenCV, the interpreter's kernels), not a video decoder's.

Tolerances (why these): the int8 model's XNNPACK kernels on ARM (NEON dot products) and on x86 (AVX2)
accumulate in int32 exactly but may requantise with a different rounding, which can move an output by one
quantisation step: |dP| <= 2 steps of the presence output's scale, and mask Dice >= 0.90 on frames where
either mask has at least 50 pixels (a one-step change flips boundary pixels only; Dice on smaller masks
says nothing). The float32 twin differs by summation order only: |dP| <= 1e-3 and Dice >= 0.98.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIN_MASK_PIXELS = 50
INT8_STEPS = 2
INT8_MIN_DICE = 0.90
FLOAT_MAX_DP = 1e-3
FLOAT_MIN_DICE = 0.98


def pick_frames(data: Path, out: Path) -> int:
    """Real frames of three sources (with and without a nerve), decoded here, saved as arrays."""
    import csv

    import cv2

    frames: list[np.ndarray] = []
    names: list[str] = []
    kaggle = sorted((data / "kaggle-bp" / "fullres" / "images").glob("*.png"))[:8]
    for p in kaggle:
        frames.append(cv2.imread(str(p), cv2.IMREAD_COLOR))
        names.append(f"kaggle/{p.name}")
    rows = list(csv.DictReader((data / "regional-us" / "manifest.csv").open()))
    # one video with few nerve frames, one nerve-free ('neg') video if any, one full of nerve
    chosen = [r for r in rows if r["label"] == "neg"][:1] + rows[:2]
    for r in chosen:
        cap = cv2.VideoCapture(str(data / "regional-us" / r["path"]))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 40
        for idx in np.linspace(0, n - 1, 4).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
            ok, img = cap.read()
            if ok:
                frames.append(img)
                names.append(f"regional-us/{r['subject']}#{idx}")
        cap.release()
    usgra = sorted((data / "usgra-seg" / "images" / "test").glob("*.png"))[:4]
    for p in usgra:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            frames.append(img)
            names.append(f"usgra-seg/{p.name}")
    np.savez_compressed(out, names=np.array(names), **{f"f{i}": f for i, f in enumerate(frames)})
    return len(frames)


def _models() -> dict[str, Path]:
    from edge.models import default_model_path

    int8 = default_model_path()
    return {"int8": int8, "float32": int8.with_name(int8.stem + "-float32.tflite")}


def run_outputs(frames_npz: Path, out: Path) -> None:
    """Both shipped models through `ModelRunner` (XNNPACK on, 2 threads) via the bedside `Analyzer`."""
    from edge.analyze import Analyzer
    from edge.config import Config
    from edge.plan import resolve_run
    from edge.runner import ModelRunner

    data = np.load(frames_npz)
    n = len(data["names"])
    result: dict[str, np.ndarray] = {}
    for kind, path in _models().items():
        runner = ModelRunner(path, threads=2)
        plan = resolve_run(Config(), runner=runner)
        masks, ps = [], []
        for i in range(n):
            analyzer = Analyzer(runner, plan.rules)  # a fresh stream per frame: no smoothing across frames
            a = analyzer.analyse(data[f"f{i}"])
            masks.append(a.result.mask >= plan.rules.mask_threshold)
            ps.append(a.result.p_nerve)
        result[f"{kind}_masks"] = np.stack(masks)
        result[f"{kind}_p"] = np.array(ps, np.float64)
        result[f"{kind}_backend"] = np.array(runner.backend)
        if kind == "int8":
            result["int8_p_step"] = np.array(_presence_step(runner))
    np.savez_compressed(out, **result)


def _presence_step(runner) -> float:
    """The presence output's quantisation step (its scale), from the interpreter's own tensor details."""
    spec = runner.spec
    for d in runner._interp.get_output_details():  # noqa: SLF001 - the scale is what the tolerance is made of
        if spec.outputs.presence in d["name"] or d["shape"].tolist() == [1, 1]:
            scale = float(d["quantization"][0])
            if scale > 0:
                return scale
    return 1.0 / 256


def compare(x86_npz: Path, arm_npz: Path) -> int:
    """Print the per-model worst cases; exit 1 when a tolerance is broken (naming frame and value)."""
    from edge.review.compare import dice

    x, a = np.load(x86_npz), np.load(arm_npz)
    faults: list[str] = []
    worst_dice, worst_dp, frames = 1.0, 0.0, 0
    for kind in ("int8", "float32"):
        mx, ma = x[f"{kind}_masks"], a[f"{kind}_masks"]
        dp = np.abs(x[f"{kind}_p"] - a[f"{kind}_p"])
        if kind == "int8":
            max_dp, min_dice = INT8_STEPS * float(x["int8_p_step"]) + 1e-9, INT8_MIN_DICE
        else:
            max_dp, min_dice = FLOAT_MAX_DP, FLOAT_MIN_DICE
        dices = [(dice(mx[i], ma[i]) if max(mx[i].sum(), ma[i].sum()) >= MIN_MASK_PIXELS else None)
                 for i in range(len(mx))]
        scored = [d for d in dices if d is not None]
        k_worst = min(scored) if scored else 1.0
        print(f"{kind}: {len(mx)} frames, mask Dice min {k_worst:.4f} over {len(scored)} frames with a mask, "
              f"|dP| max {dp.max():.5f} (tolerances: Dice >= {min_dice}, |dP| <= {max_dp:.5f})")
        for i, d in enumerate(dices):
            if d is not None and d < min_dice:
                faults.append(f"{kind} frame {i}: mask Dice {d:.4f} < {min_dice}")
            if dp[i] > max_dp:
                faults.append(f"{kind} frame {i}: |dP| {dp[i]:.5f} > {max_dp:.5f}")
        worst_dice, worst_dp, frames = min(worst_dice, k_worst), max(worst_dp, float(dp.max())), frames + len(mx)
    for f in faults:
        print(f"FAULT {f}")
    print(f"compared {frames} frames: worst mask Dice {worst_dice:.4f}, worst |dP| {worst_dp:.5f}")
    return 1 if faults else 0


def import_all() -> int:
    """Import every module of the device package (edge/); print the count."""
    import edge

    names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
    for name in names:
        importlib.import_module(name)
    assert "tensorflow" not in sys.modules, "an edge module imported TensorFlow"
    import cv2
    import numpy

    from edge.runner import load_interpreter_class

    _, backend = load_interpreter_class("auto")
    print(f"imported {len(names)} edge modules; Python {sys.version.split()[0]}, numpy {numpy.__version__}, "
          f"OpenCV {cv2.__version__}, {backend}")
    return 0


def main(argv: list[str]) -> int:
    cmd, *args = argv
    if cmd == "frames":
        print(f"{pick_frames(Path(args[0]), Path(args[1]))} frames")
        return 0
    if cmd == "outputs":
        run_outputs(Path(args[0]), Path(args[1]))
        return 0
    if cmd == "compare":
        return compare(Path(args[0]), Path(args[1]))
    if cmd == "imports":
        return import_all()
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
