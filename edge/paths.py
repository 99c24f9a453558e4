"""Default places on disk and devices: the one module that spells them out.

Imports only the standard library, so the config models, the command-line parser
and anything that runs before OpenCV is loaded can use it. Paths that depend on
the environment (the user cache, the shared data) are functions, read at call
time, so a test or a service that sets the variable sees its own value.

The appliance layout (see systemd/): configuration in /etc/nerveseg, state and
recordings in /var/lib/nerveseg (the service's home and working directory),
the health file in /run/nerveseg (tmpfs: rewritten every few seconds without
wearing the SD card).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the service's state folder (its home and working directory)
DATA_ROOT = "/var/lib/nerveseg"
#: recordings for review, one folder per session below it (``record.dir``)
RECORDINGS_DIR = f"{DATA_ROOT}/recordings"
#: the health file the appliance config sets (``health.status_file``) and `nerveseg status` reads
STATUS_FILE = "/run/nerveseg/status.json"

#: the V4L2 capture device a bare ``v4l2`` source opens
DEFAULT_V4L2_DEVICE = "/dev/video0"
#: the framebuffer a bare ``fbdev`` sink draws into
DEFAULT_FRAMEBUFFER = "/dev/fb0"
#: where /dev/fbN describes its geometry (fbN/virtual_size, bits_per_pixel, stride)
SYSFS_GRAPHICS = "/sys/class/graphics"

#: the environment variable naming the shared data folder
DATA_ENV = "NERVESEG_DATA"
#: the checkout this module lives in (meaningful in a source checkout, not in an installed wheel)
REPO = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """The user's cache for nerveseg: ``$XDG_CACHE_HOME/nerveseg``, else ``~/.cache/nerveseg``.

    Not created here; callers make the subfolder they write to (e.g. ``bench``).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nerveseg"


def shared_data_dir() -> Path:
    """The real data (never committed): ``$NERVESEG_DATA``, else ``shared/data`` beside the checkout."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else REPO.parent / "shared" / "data"
