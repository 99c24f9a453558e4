"""Config loading: defaults, every error names key path, value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel, ValidationError

from edge import paths
from edge.cli import main
from edge.config import Config, load_config, parse_config, with_overrides
from edge.configs import example_configs
from edge.errors import ConfigError
from edge.sinks import SINKS
from edge.sinks.settings import NullSinkConfig, SinkConfig, VideoSinkConfig
from edge.sources import SOURCES
from edge.sources.settings import FileSourceConfig, PhantomSourceConfig, SourceConfig

REPO = Path(__file__).resolve().parents[2]


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
    assert cfg.source.kind == "file" and cfg.source.path == "/x.mp4" and cfg.source.loop
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
    (msg,) = _problems({"source": {"spec": "v4l2", "fourcc": "H264"}})
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


# ------------------------------------------------------------------------------------- one model per source/sink kind
def _foreign_key(registry, kind: str) -> tuple[str, list[str]]:
    """A key some other kind has and ``kind`` has not, and the kinds that have it."""
    own = set(registry[kind].config.model_fields)
    for other in registry:
        for key in registry[other].config.model_fields:
            if key not in own:
                return key, registry.kind_of_key(key)
    raise AssertionError(f"every key of every kind is a key of {kind}")


@pytest.mark.parametrize("section, kind", [("source", k) for k in SOURCES] + [("sink", k) for k in SINKS])
def test_a_key_of_another_kind_is_rejected_naming_key_kind_and_allowed_keys(section, kind, tmp_path):
    registry = SOURCES if section == "source" else SINKS
    model = registry[kind].config
    key, owners = _foreign_key(registry, kind)
    p = tmp_path / "c.yaml"
    p.write_text(f"{section}:\n  spec: {model.spec_example}\n  {key}: 1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (msg,) = ei.value.problems
    assert msg.startswith(f"{section}.{key}: unknown key for the {kind} {section}")
    assert f"{key} belongs to {', '.join(owners)}" in msg
    assert msg.endswith("allowed keys for the " f"{kind} {section}: " + ", ".join(["spec", *model.model_fields]))
    # the explicit form gets the same answer
    explicit = {"kind": kind, key: 1}
    if model.spec_arg and model.model_fields[model.spec_arg].is_required():
        explicit[model.spec_arg] = "x"
    assert _problems({section: explicit}) == [msg]


def test_fourcc_with_a_file_source_is_rejected():
    (msg,) = _problems({"source": {"spec": "file:clip.mp4", "loop": True, "fourcc": "MJPG"}})
    assert msg.startswith("source.fourcc: unknown key for the file source (fourcc belongs to v4l2)")
    assert "allowed keys for the file source: spec, kind, path, width, height, fps, pace, loop" in msg


SHORTHANDS = [
    ("source", {"spec": "v4l2:/dev/video2", "fps": 30}, {"kind": "v4l2", "device": "/dev/video2", "fps": 30}),
    ("source", {"spec": "v4l2:0"}, {"kind": "v4l2", "device": 0}),  # YAML's number is the index form
    ("source", {"spec": "V4L2"}, {"kind": "v4l2", "device": "/dev/video0"}),
    ("source", {"spec": "picamera2:1", "width": 1920, "height": 1080}, {"kind": "picamera2", "camera": 1,
                                                                        "width": 1920, "height": 1080}),
    ("source", {"spec": "picamera2"}, {"kind": "picamera2"}),
    ("source", {"spec": "file:clip.mp4", "loop": True}, {"kind": "file", "path": "clip.mp4", "loop": True}),
    ("source", {"spec": "images:/some/dir", "fps": 20}, {"kind": "images", "path": "/some/dir", "fps": 20}),
    ("source", {"spec": "phantom", "seed": 3}, {"kind": "phantom", "seed": 3}),
    ("source", {"seed": 3}, {"kind": "phantom", "seed": 3}),  # no kind: the phantom, as before
    ("source", "file:clip.mp4", {"kind": "file", "path": "clip.mp4"}),  # a bare spec string
    ("sink", {"spec": "fbdev:/dev/fb1", "bpp": 16}, {"kind": "fbdev", "device": "/dev/fb1", "bpp": 16}),
    ("sink", {"spec": "window", "fullscreen": False}, {"kind": "window", "fullscreen": False}),
    ("sink", {"spec": "video:out.mp4", "fps": 25}, {"kind": "video", "path": "out.mp4", "fps": 25}),
    ("sink", {"spec": "null"}, {"kind": "null"}),
    ("sink", {}, {"kind": "null"}),
]


@pytest.mark.parametrize("section, short, explicit", SHORTHANDS, ids=lambda v: str(v))
def test_spec_shorthand_and_explicit_kind_give_equal_models(section, short, explicit):
    a, b = getattr(parse_config({section: short}), section), getattr(parse_config({section: explicit}), section)
    assert a == b and type(a) is type(b)
    registry = SOURCES if section == "source" else SINKS
    assert type(a) is registry[a.kind].config
    # the one-string form comes back and, with the other keys, means the same model
    rest = {k: v for k, v in a.model_dump().items() if k not in ("kind", type(a).spec_arg)}
    assert getattr(parse_config({section: {"spec": a.spec, **rest}}), section) == a
    # the dumped form (what check-config --show prints) is a valid config of the same model
    assert getattr(parse_config({section: a.model_dump()}), section) == a


def test_base_model_builds_the_kind_named():
    src = SourceConfig(spec="file:/x.mp4", loop=True, fps=30)
    assert type(src) is FileSourceConfig and src.path == "/x.mp4" and src.loop and src.spec == "file:/x.mp4"
    assert type(SourceConfig()) is PhantomSourceConfig and type(SinkConfig()) is NullSinkConfig
    assert SinkConfig(kind="video", path="o.mp4") == VideoSinkConfig(spec="video:o.mp4")
    with pytest.raises(ValidationError):
        SourceConfig(spec="file:/x.mp4", fourcc="MJPG")
    with pytest.raises(ValidationError):
        FileSourceConfig(spec="v4l2:0")  # a spec of another kind


@pytest.mark.parametrize(
    "data, where, says",
    [
        ({"source": {"spec": "file:"}}, "source.spec", "the file source needs a path"),
        ({"source": {"kind": "file"}}, "source.path", "required key is missing for the file source"),
        ({"source": {"kind": "rtsp"}}, "source.kind", "allowed kinds: v4l2, picamera2, file, images, phantom"),
        ({"source": {"kind": "v4l2", "spec": "file:x"}}, "source.spec", "names kind 'file' but kind is 'v4l2'"),
        ({"source": {"spec": "file:a.mp4", "path": "b.mp4"}}, "source.spec", "give one of them"),
        ({"source": {"spec": "phantom:3"}}, "source.spec", "takes nothing after ':'"),
        ({"source": {"spec": 5}}, "source.spec", "spec is a string"),
        ({"source": [1]}, "source", "a source is a mapping"),
        ({"source": {"spec": "picamera2:x"}}, "source.camera", "integer"),
        ({"sink": {"spec": "window:x"}}, "sink.spec", "the window sink takes nothing after ':'"),
        ({"sink": {"spec": "hdmi"}}, "sink.spec", "allowed kinds: fbdev, window, video, null"),
        ({"sink": {"spec": "fbdev", "bpp": 24}}, "sink.bpp", "16"),
    ],
)
def test_kind_faults_name_key_value_and_what_is_allowed(data, where, says):
    (msg,) = _problems(data)
    assert msg.startswith(f"{where}: ") and says in msg


def test_overrides_switch_kind_keeping_the_keys_the_new_kind_has():
    cfg = parse_config({"source": {"spec": "v4l2:/dev/video0", "width": 1920, "height": 1080, "fps": 30,
                                   "fourcc": "YUYV", "retry_max_s": 2}, "sink": {"spec": "fbdev", "bpp": 16}})
    clip = with_overrides(cfg, source={"spec": "file:clip.mp4"}).source
    assert clip == FileSourceConfig(path="clip.mp4", width=1920, height=1080, fps=30)
    other = with_overrides(cfg, source={"spec": "v4l2:2"}).source  # same kind: every key stays but the device
    assert other == cfg.source.model_copy(update={"device": "2"})
    assert with_overrides(cfg, source={"spec": "v4l2"}).source.device == "/dev/video0"
    assert with_overrides(cfg, sink={"spec": "video:o.mp4"}).sink == VideoSinkConfig(path="o.mp4")
    assert with_overrides(cfg, source={"kind": "phantom", "pace": False}).source.pace is False
    with pytest.raises(ConfigError) as ei:
        with_overrides(cfg, source={"spec": "phantom", "loop": True})  # the phantom never ends: loop is not its key
    assert ei.value.problems[0].startswith("source.loop: unknown key for the phantom source")
    with pytest.raises(ConfigError, match="source.spec"):
        with_overrides(cfg, source={"spec": "rtsp://x"})


def _types_in(tp) -> list:
    """``tp`` and every type inside it (Optional, unions, Annotated, lists), flattened."""
    return [tp, *(t for arg in get_args(tp) for t in _types_in(arg))]


def _models(model, seen=None):
    """Every config model reachable from ``model``, union members included."""
    seen = seen if seen is not None else {}
    if model.__name__ in seen:
        return seen
    seen[model.__name__] = model
    for f in model.model_fields.values():
        for tp in _types_in(f.annotation):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _models(tp, seen)
    return seen


def test_every_field_of_every_config_model_has_a_one_line_description():
    models = _models(Config)
    for registry in (SOURCES, SINKS):
        for kind in registry:
            assert registry[kind].config.__name__ in models, f"{kind} is not reachable from Config"
    missing = [f"{m.__name__}.{name}" for m in models.values() for name, f in m.model_fields.items()
               if not (f.description and f.description.strip()) or "\n" in f.description]
    assert not missing, f"fields without a one-line description: {missing}"


def test_importing_the_config_loads_no_opencv_and_no_implementation():
    code = ("import sys, edge.config; bad = sorted(m for m in sys.modules if m == 'cv2' or m.startswith("
            "('edge.sources.', 'edge.sinks.')) and not m.endswith(('.base', '.settings'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------- default paths
def test_default_paths_come_from_edge_paths(monkeypatch, tmp_path):
    assert Config().record.dir == paths.RECORDINGS_DIR == "/var/lib/nerveseg/recordings"
    assert paths.STATUS_FILE == "/run/nerveseg/status.json"
    assert Config().source == PhantomSourceConfig() and parse_config({"source": {"spec": "v4l2"}}).source.device \
        == paths.DEFAULT_V4L2_DEVICE
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert paths.cache_dir() == tmp_path / "nerveseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_dir() == tmp_path / "home" / ".cache" / "nerveseg"
    monkeypatch.setenv("NERVESEG_DATA", str(tmp_path / "data"))
    assert paths.shared_data_dir() == tmp_path / "data"
    monkeypatch.delenv("NERVESEG_DATA")
    assert paths.shared_data_dir() == REPO.parent / "shared" / "data"
