"""Config loading: defaults, every error names key path, value and what is allowed."""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.config import Config, load_config, parse_config, with_overrides
from edge.configs import example_configs
from edge.errors import ConfigError


def _problems(data) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    return ei.value.problems


def test_empty_file_is_a_valid_config(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(p) == Config()


def test_partial_file_changes_only_its_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("source:\n  spec: file:/x.mp4\n  loop: true\nmodel:\n  threads: 4\n")
    cfg = load_config(p)
    assert cfg.source.kind == "file" and cfg.source.arg == "/x.mp4" and cfg.source.loop
    assert cfg.model.threads == 4
    assert cfg.sink == Config().sink and cfg.presence == Config().presence


def test_unknown_key_is_rejected_and_allowed_keys_listed():
    (msg,) = _problems({"source": {"fsp": 30}})
    assert msg.startswith("source.fsp: unknown key")
    assert "fps" in msg and "spec" in msg


def test_unknown_section_is_rejected():
    (msg,) = _problems({"sourse": {}})
    assert "sourse" in msg and "source" in msg


def test_bad_value_names_key_value_and_allowed():
    (msg,) = _problems({"source": {"fourcc": "H264"}})
    assert "source.fourcc" in msg and "'H264'" in msg and "MJPG" in msg and "YUYV" in msg


def test_out_of_range_value():
    (msg,) = _problems({"model": {"threads": 0}})
    assert "model.threads" in msg and "0" in msg and "greater than or equal to 1" in msg


def test_bad_source_kind_lists_kinds():
    (msg,) = _problems({"source": {"spec": "rtsp://cam"}})
    assert "source.spec" in msg and "v4l2" in msg and "phantom" in msg


def test_file_source_needs_path_and_video_sink_needs_path():
    assert "file source needs a path" in _problems({"source": {"spec": "file:"}})[0]
    assert "video sink needs a path" in _problems({"sink": {"spec": "video"}})[0]


def test_hysteresis_order_checked():
    (msg,) = _problems({"presence": {"enter": 0.3, "exit": 0.6}})
    assert "presence" in msg and "exit" in msg and "enter" in msg


def test_every_fault_is_reported_at_once():
    probs = _problems({"model": {"threads": -1}, "overlay": {"alpha": 2}, "roi": {"x": 0}})
    keys = " ".join(probs)
    for k in ("model.threads", "overlay.alpha", "roi.y", "roi.w", "roi.h"):
        assert k in keys


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("source:\n  spec: [phantom\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p) in str(ei.value) and "line" in ei.value.problems[0]


def test_top_level_must_be_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_validated_like_the_file():
    cfg = with_overrides(Config(), model={"threads": 3})
    assert cfg.model.threads == 3
    with pytest.raises(ConfigError) as ei:
        with_overrides(Config(), loop={"max_frames": -5})
    assert "loop.max_frames" in ei.value.problems[0]


@pytest.mark.parametrize("path", example_configs(), ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    assert main(["check-config", str(path)]) == 0


def test_check_config_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("overlay:\n  color: [0, 0, 999]\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "overlay.color" in err and "999" in err
    good = tmp_path / "good.yaml"
    good.write_text("")
    assert main(["check-config", str(good), "--show"]) == 0
    assert "stale_after_ms" in capsys.readouterr().out
