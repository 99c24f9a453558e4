"""``nerveseg calibrate``: fit the ROI to the ultrasound machine this box is plugged into (once per site).

    nerveseg calibrate [--config FILE] [--source SPEC] [--frames N] [--roi x,y,w,h] [--out PROFILE.yaml]
                       [--mm-per-pixel MM] [--flip-horizontal] [--flip-vertical] [--force]

Registered through the ``nerveseg.commands`` entry point, so `edge` never imports
this package. Runs on the device: numpy, OpenCV and the edge sources only, no
TensorFlow. Exit codes as ``edge.cli``: 0 written; 2 bad option or config, or frames
it cannot calibrate on (`CalibrationError`: blank, all identical, no image region,
noise, ROI outside the frame or barely changing while the image changes elsewhere,
output exists without --force); 4 source cannot be opened or sends nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edge.errors import ConfigError
from edge.plugin import common_options
from edge.types import Roi

logger = logging.getLogger(__name__)


def parse_roi(text: str) -> Roi:
    """``x,y,w,h`` (pixels, w and h > 0) -> `Roi`; argparse turns the ValueError into exit code 2."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--roi must be x,y,w,h in pixels, e.g. 420,130,1100,800; got {text!r}") \
            from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--roi needs x, y >= 0 and w, h > 0; got {text!r}")
    return Roi(x, y, w, h)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.calibrate import MAX_KEPT, calibrate
    from edge.config import Config, load_config, with_overrides
    from edge.plugin import setup_logging, source_override

    cfg = load_config(args.config) if args.config else Config()
    cfg = with_overrides(cfg, source=source_override(args.source))
    if args.frames < 4:
        raise ConfigError("<command line>", [f"--frames: got {args.frames}: at least 4 (60 or more is better)"])
    if args.mm_per_pixel is not None and not 0 < args.mm_per_pixel <= 10:
        raise ConfigError("<command line>", [f"--mm-per-pixel: got {args.mm_per_pixel}: must be > 0 and <= 10"])
    setup_logging(args.log_level or "WARNING")
    res = calibrate(
        cfg.source,
        Path(args.out),
        frames=args.frames,
        roi=args.roi,
        mm_per_pixel=args.mm_per_pixel,
        flips=(args.flip_horizontal, args.flip_vertical),
        force=args.force,
    )
    p = res.profile
    r = p.image_roi
    sw, sh = p.source.width, p.source.height
    how = "given (--roi)" if res.detection is None else (
        f"found: changing region, median activity {res.detection.activity:.1f} gray levels, "
        f"structure {res.detection.structure:.2f}"
    )
    blank_px = sum(b.w * b.h for b in p.blank_rois)
    print(f"nerveseg calibrate: {p.source.description}")
    print(f"  frames      : {p.detection.frames} analysed ({sw}x{sh})")
    print(f"  roi         : x={r.x} y={r.y} w={r.w} h={r.h} ({how})")
    print(f"  blanking    : {len(p.blank)} regions, {100.0 * blank_px / (sw * sh):.1f}% of the frame")
    print(f"  frames dir  : {res.frames_dir} ({res.frames_written} ROI crops, at most {MAX_KEPT}; "
          f"nerveseg convert --calibration {res.frames_dir})")
    print(f"  preview     : {res.preview_path}")
    if res.still_probe:
        print(f"  WARNING     : {res.still_probe}")
    print(f"OK: {res.profile_path} (use it with the config key  profile: {res.profile_path.resolve()})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nerveseg calibrate`` (entry point ``nerveseg.commands``)."""
    from calibration.calibrate import DEFAULT_FRAMES

    p = subparsers.add_parser(
        "calibrate",
        parents=[common_options()],
        help="once per site: find the ultrasound image in the machine's video out, write a site profile",
        description="Grab frames from the source, find the ultrasound image (the region that changes while "
        "scanning) and the burned-in text/UI to blank in recordings, and write a site profile (YAML), a folder "
        "of ROI-cropped frames for 'nerveseg convert --calibration' and a preview PNG. Scan (move the probe) "
        "while it runs.",
    )
    p.add_argument("--config", help="YAML config: its source settings are used (default: built-in defaults)")
    p.add_argument("--source", help="source spec or a video file / image folder; overrides source.spec")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help="frames to grab and analyse (default %(default)s, about 2 s of live video)")
    p.add_argument("--roi", type=parse_roi, metavar="x,y,w,h",
                   help="the image's box in frame pixels, instead of detecting it (refused when it barely "
                   "changes while the image changes elsewhere)")
    p.add_argument("--out", default="site-profile.yaml",
                   help="profile to write (default %(default)s); OUT-frames/ and OUT-preview.png go beside it")
    p.add_argument("--mm-per-pixel", type=float, metavar="MM", help="pixel size, if you know it (stored only)")
    p.add_argument("--flip-horizontal", action="store_true",
                   help="mirror the network's input left-right (this machine shows the image mirrored)")
    p.add_argument("--flip-vertical", action="store_true", help="mirror the network's input top-bottom")
    p.add_argument("--force", action="store_true", help="replace an existing profile and its frames")
    p.set_defaults(func=cmd_calibrate)
