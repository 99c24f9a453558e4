"""Fixtures shared by every test package.

Real data lives in ``../shared/data`` beside the checkout (override with
``NERVESEG_DATA``). Tests that need it take the ``data_dir`` fixture, which skips
with a reason when the folder is absent and *fails* when ``CI`` is set, because
CI always has it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.paths import shared_data_dir

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return shared_data_dir()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_root()
    if not (root / "kaggle-bp" / "manifest.csv").is_file():
        msg = f"real data not found at {root} (set NERVESEG_DATA or place shared/data beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def lung_clips(data_dir: Path) -> list[Path]:
    clips = sorted((data_dir / "video-us-lung-linear").glob("*.mp4"))
    assert clips, "video-us-lung-linear holds no mp4"
    return clips


@pytest.fixture(scope="session")
def kaggle_fullres(data_dir: Path) -> Path:
    return data_dir / "kaggle-bp" / "fullres" / "images"


@pytest.fixture()
def open_dir() -> Iterator[Path]:
    """A folder everyone may search (pytest's own tmp folders are private to root): for tests that run a
    command as another user (`tests.unprivileged`)."""
    d = Path(tempfile.mkdtemp(prefix="nerveseg-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
