"""The site profile file (edge.profile) and how the config refers to it."""

from __future__ import annotations

import datetime

import pytest
import yaml

from edge.config import RoiConfig, parse_config
from edge.errors import ConfigError
from edge.profile import DetectionInfo, ProfileSource, SiteProfile, load_profile, save_profile
from edge.types import Roi


def make_profile(**changes) -> SiteProfile:
    base = dict(
        created=datetime.datetime(2025, 1, 31, 10, 42, tzinfo=datetime.timezone.utc),
        source=ProfileSource(width=1920, height=1080, description="v4l2:/dev/video0 1920x1080 MJPG"),
        roi=RoiConfig(x=420, y=130, w=1100, h=800),
        flip_horizontal=True,
        mm_per_pixel=0.05,
        blank=[RoiConfig(x=0, y=0, w=1920, h=60), RoiConfig(x=1530, y=130, w=40, h=800)],
        frames_dir="site-frames",
        detection=DetectionInfo(method="auto", frames=60, threshold=2.5, activity=12.8, structure=0.98),
    )
    base.update(changes)
    return SiteProfile(**base)


def test_profile_is_readable_by_the_service_user_and_replaced_whole(tmp_path):
    # calibrate often runs with sudo; the service reads the profile as its own user
    path = save_profile(make_profile(), tmp_path / "site.yaml")
    assert path.stat().st_mode & 0o777 == 0o644
    save_profile(make_profile(mm_per_pixel=0.07), path)
    assert load_profile(path).mm_per_pixel == 0.07
    assert [f.name for f in tmp_path.iterdir()] == ["site.yaml"]  # no temporary file left behind


def test_round_trip(tmp_path):
    p = make_profile()
    path = save_profile(p, tmp_path / "site.yaml")
    back = load_profile(path)
    assert back == p
    assert back.image_roi == Roi(420, 130, 1100, 800)
    assert back.blank_rois == (Roi(0, 0, 1920, 60), Roi(1530, 130, 40, 800))
    assert back.flips == (True, False)
    assert back.frames_path(path) == tmp_path / "site-frames"
    text = path.read_text()
    assert text.startswith("# nerveseg site profile")
    data = yaml.safe_load(text)
    assert data["created"] == "2025-01-31T10:42:00Z"  # ISO 8601
    assert data["roi"] == {"x": 420, "y": 130, "w": 1100, "h": 800}
    assert data["source"] == {"width": 1920, "height": 1080, "description": "v4l2:/dev/video0 1920x1080 MJPG"}
    assert not list(tmp_path.glob(".site.yaml.*"))  # the temporary file of the atomic write is gone


def _errors(tmp_path, data) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    return str(e.value)


def test_validation_errors_name_the_key(tmp_path):
    good = make_profile().model_dump(mode="json")
    msg = _errors(tmp_path, {**good, "roi": {**good["roi"], "w": 0}})
    assert "roi.w: got 0" in msg and "site profile" in msg and str(tmp_path / "bad.yaml") in msg
    msg = _errors(tmp_path, {**good, "roi": {"x": 1000, "y": 130, "w": 1100, "h": 800}})
    assert "roi: got" in msg and "outside the 1920x1080 source frame" in msg
    msg = _errors(tmp_path, {**good, "blank": [{"x": 0, "y": 0, "w": 10, "h": 10}, {"x": 1900, "y": 0, "w": 40,
                                                                                    "h": 10}]})
    assert "blank: got" in msg and "rectangle(s) 1 lie outside" in msg
    msg = _errors(tmp_path, {**good, "blank": [{"x": 0, "y": 0, "w": 10}]})
    assert "blank.0.h: required key is missing" in msg
    msg = _errors(tmp_path, {**good, "flips": True})
    assert "flips: unknown key; allowed keys here: format, created, source, roi" in msg
    msg = _errors(tmp_path, {**good, "source": {**good["source"], "fps": 30}})
    assert "source.fps: unknown key" in msg
    msg = _errors(tmp_path, {**good, "mm_per_pixel": -1})
    assert "mm_per_pixel: got -1" in msg
    msg = _errors(tmp_path, {k: v for k, v in good.items() if k != "created"})
    assert "created: required key is missing" in msg
    msg = _errors(tmp_path, {**good, "format": "something/2"})
    assert "format: got 'something/2'" in msg


def test_created_needs_a_time_zone(tmp_path):
    """A time without a zone names a different instant on every box: refused, naming the key."""
    good = make_profile().model_dump(mode="json")
    for text in ("created: 2025-01-01\n", "created: 2025-01-01T10:42:00\n", "created: '2025-01-01 10:42'\n"):
        body = yaml.safe_dump({k: v for k, v in good.items() if k != "created"})
        (tmp_path / "naive.yaml").write_text(text + body)
        with pytest.raises(ConfigError) as e:
            load_profile(tmp_path / "naive.yaml")
        assert "created: got" in str(e.value) and "no time zone" in str(e.value), text
        assert "'2025-01-31T10:42:00Z'" in str(e.value)  # what to write instead
    # With a zone it is the same instant, kept in UTC as docs/operator.md says.
    (tmp_path / "cest.yaml").write_text("created: 2025-01-31T12:42:00+02:00\n" + body)
    created = load_profile(tmp_path / "cest.yaml").created
    assert created == datetime.datetime(2025, 1, 31, 10, 42, tzinfo=datetime.timezone.utc)
    assert created.tzinfo == datetime.timezone.utc


def test_missing_empty_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_profile(tmp_path / "none.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="got empty"):
        load_profile(tmp_path / "empty.yaml")
    (tmp_path / "broken.yaml").write_text("roi: {x: 1,\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_profile(tmp_path / "broken.yaml")


def test_config_profile_key_and_roi_conflict():
    assert parse_config({"profile": "/etc/nerveseg/site.yaml"}).profile == "/etc/nerveseg/site.yaml"
    assert parse_config({}).profile is None
    with pytest.raises(ConfigError) as e:
        parse_config({"roi": {"x": 0, "y": 0, "w": 10, "h": 10}, "profile": "site.yaml"})
    assert "profile: got 'site.yaml': roi and profile are both set" in str(e.value)
    with pytest.raises(ConfigError, match="profile: got '': empty path"):
        parse_config({"profile": ""})
