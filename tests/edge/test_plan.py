"""One run plan: what `check-config` accepts, `run` starts; what one refuses, the other refuses with the same code."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.analyze import Analyzer, network_input
from edge.cli import EXIT_CONFIG, EXIT_MODEL, main
from edge.config import Config, with_overrides
from edge.errors import ConfigError, ModelError
from edge.models import default_model_path
from edge.plan import resolve_run, settle_rules
from edge.profile import save_profile
from edge.runner import ModelRunner
from edge.spec import load_spec
from edge.types import Roi
from tests.calibration.test_profile import make_profile

REPO = Path(__file__).resolve().parents[2]
SHIPPED = load_spec(default_model_path())


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _bad_configs(tmp: Path) -> dict[str, tuple[dict, int, str]]:
    """name -> (config, exit code both commands must give, text the message must hold)."""
    corrupt = tmp / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all" * 10)
    shutil.copy(default_model_path().with_suffix(".yaml"), corrupt.with_suffix(".yaml"))
    bad_profile = _write(tmp / "bad-profile.yaml", {"roi": {"x": 0}})
    return {
        # below the shipped spec's exit: valid alone, no hysteresis once combined
        "enter below the spec's exit": ({"presence": {"enter": 0.01}}, EXIT_CONFIG, "presence.exit"),
        "exit above the spec's enter": ({"presence": {"exit": 0.99}}, EXIT_CONFIG, "presence.enter"),
        "unknown key": ({"presense": {"enter": 0.9}}, EXIT_CONFIG, "presense"),
        "missing model": ({"model": {"path": str(tmp / "none.tflite")}}, EXIT_MODEL, "none.tflite"),
        "corrupt model": ({"model": {"path": str(corrupt)}}, EXIT_MODEL, "corrupt.tflite"),
        "missing profile": ({"profile": str(tmp / "none-profile.yaml")}, EXIT_CONFIG, "none-profile.yaml"),
        "invalid profile": ({"profile": str(bad_profile)}, EXIT_CONFIG, "bad-profile.yaml"),
    }


def test_check_config_and_run_refuse_the_same_configs_with_the_same_code(tmp_path, capsys):
    for name, (data, code, text) in _bad_configs(tmp_path).items():
        path = _write(tmp_path / "cfg.yaml", data)
        got_check = main(["check-config", str(path)])
        err_check = capsys.readouterr().err
        got_run = main(["run", "--config", str(path), "--frames", "2"])
        err_run = capsys.readouterr().err
        assert got_check == got_run == code, (name, got_check, got_run, err_check, err_run)
        for err in (err_check, err_run):
            assert text in err and "Traceback" not in err, (name, err)


def test_the_reported_case_in_real_processes_never_exit_1_nor_a_traceback(tmp_path):
    # presence: {enter: 0.01} passed check-config and killed run with a ValueError (exit 1: systemd restarts it)
    path = _write(tmp_path / "cfg.yaml", {"presence": {"enter": 0.01}, "source": {"spec": "phantom"}})
    for cmd in (["check-config", str(path)], ["run", "--config", str(path), "--frames", "3"]):
        r = subprocess.run([sys.executable, "-m", "edge.cli", *cmd], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
        assert r.returncode == EXIT_CONFIG, (cmd, r.stderr)
        assert "Traceback" not in r.stderr and "presence.enter = 0.01 (this config)" in r.stderr


def test_check_config_loads_the_model_the_config_names(tmp_path, capsys):
    path = _write(tmp_path / "cfg.yaml", {"model": {"path": str(default_model_path())}})
    assert main(["check-config", str(path)]) == 0
    assert SHIPPED.name in capsys.readouterr().out


def test_rules_come_from_the_config_where_set_else_the_spec():
    t = SHIPPED.thresholds
    rules = settle_rules(Config().presence, t)
    assert (rules.enter, rules.exit, rules.min_frames_on, rules.min_frames_off, rules.alpha, rules.mask_threshold) == (
        t.presence_enter, t.presence_exit, t.min_frames_on, t.min_frames_off, t.mask_smoothing, t.mask)
    assert set(rules.origin.values()) == {"spec"}
    cfg = with_overrides(Config(), presence={"enter": 0.97, "min_frames_on": 7})
    rules = settle_rules(cfg.presence, t)
    assert (rules.enter, rules.min_frames_on, rules.exit) == (0.97, 7, t.presence_exit)
    assert rules.origin["enter"] == "config" and rules.origin["exit"] == "spec"
    with pytest.raises(ConfigError, match=r"presence.exit = .* \(the model spec\) is above presence.enter = 0.01"):
        settle_rules(with_overrides(Config(), presence={"enter": 0.01}).presence, t)


def test_the_profile_supplies_roi_flips_and_blanking_and_the_plan_needs_its_file_no_more(tmp_path):
    profile = make_profile()
    path = save_profile(profile, tmp_path / "site.yaml")
    plan = resolve_run(Config.model_validate({"profile": str(path)}))
    assert plan.roi == Roi(420, 130, 1100, 800) and plan.flips == (True, False)
    assert plan.blank == profile.blank_rois and plan.profile == profile and plan.profile_path == path
    path.unlink()  # everything a run needs from the profile is in the plan now
    assert plan.roi_for(None) == Roi(420, 130, 1100, 800)


def test_roi_precedence_config_then_source_then_whole_frame():
    class WithRoi:
        image_roi = Roi(1, 2, 3, 4)

    class Without:
        image_roi = None

    plain = resolve_run(Config())
    assert plain.roi_for(WithRoi()) == Roi(1, 2, 3, 4) and plain.roi_for(Without()) is None
    own = resolve_run(with_overrides(Config(), roi={"x": 5, "y": 6, "w": 70, "h": 80}))
    assert own.roi_for(WithRoi()) == Roi(5, 6, 70, 80)


def test_with_config_changes_only_sections_that_do_not_settle_the_plan():
    plan = resolve_run(Config())
    other = plan.with_config(sink={"spec": "null"}, loop={"max_frames": 3})
    assert other.config.loop.max_frames == 3 and other.rules == plan.rules
    with pytest.raises(ValueError, match="presence"):
        plan.with_config(presence={"enter": 0.9})


def test_a_model_changed_after_its_spec_was_loaded_is_refused(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(default_model_path(), model)
    shutil.copy(default_model_path().with_suffix(".yaml"), model.with_suffix(".yaml"))
    plan = resolve_run(with_overrides(Config(), model={"path": str(model)}))
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="changed after its spec was loaded"):
        plan.open_runner()


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=1)


def test_analyzer_mirrors_the_input_and_gives_the_mask_back_unmirrored(runner):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (180, 240, 3), np.uint8)
    image[:, :120] //= 3  # a left-right asymmetric picture
    rules = resolve_run(Config(), runner=runner).rules
    plain = Analyzer(runner, rules).analyse(image)
    mirrored = Analyzer(runner, rules, flips=(True, False)).analyse(image[:, ::-1].copy())
    # the network saw the same input both times, so the same output, drawn in each picture's own orientation
    np.testing.assert_array_equal(mirrored.model_input, plain.model_input)
    np.testing.assert_allclose(mirrored.result.mask[:, ::-1], plain.result.mask, atol=1e-6)
    assert mirrored.result.p_nerve == pytest.approx(plain.result.p_nerve)
    flipped_input = network_input(image[:, ::-1].copy(), None, runner.spec.preprocess, (True, False))
    np.testing.assert_array_equal(flipped_input, plain.model_input)


def test_analyzer_times_every_stage_in_order(runner):
    laps: list[str] = []
    Analyzer(runner, resolve_run(Config(), runner=runner).rules, roi=Roi(10, 10, 100, 80)).analyse(
        np.full((120, 160, 3), 90, np.uint8), laps.append)
    expected = ["roi_gray", "resize", "denoise", "normalise", "infer", "smooth"]
    if runner.spec.preprocess.filter_at == "roi":
        expected = ["roi_gray", "denoise", "resize", "normalise", "infer", "smooth"]
    assert laps == expected


def test_a_runner_of_another_model_is_refused_by_the_pipeline(runner, tmp_path):
    from edge.pipeline import Pipeline
    from edge.sinks.null import NullSink
    from edge.sources.phantom import PhantomSource  # noqa: F401 - the source module must import

    plan = resolve_run(Config(), runner=runner)
    other = dataclasses.replace(plan, spec=plan.spec.model_copy(update={"name": "another"}))
    with pytest.raises(ValueError, match="not the plan's model"):
        Pipeline(other, object(), runner, NullSink())


def test_more_faults_run_would_meet_are_refused_before_it_starts(tmp_path, capsys):
    roi_off = {"source": {"spec": "v4l2", "width": 640, "height": 480}, "roi": {"x": 600, "y": 0, "w": 100, "h": 100}}
    for data, text in ((roi_off, "does not fit the 640x480"),
                       ({"record": {"mode": False}}, 'put the word in quotes, e.g. mode: "off"'),
                       ({"record": {"max_gb": 0.0005}}, "record.max_gb")):
        path = _write(tmp_path / "cfg.yaml", data)
        assert main(["check-config", str(path)]) == EXIT_CONFIG
        assert text in capsys.readouterr().err


def test_a_spec_that_says_int8_for_a_float32_model_is_refused(tmp_path):
    float_model = default_model_path().with_name("nerveseg-float32.tflite")
    model = tmp_path / "m.tflite"
    shutil.copy(float_model, model)
    from edge.spec import save_spec

    save_spec(load_spec(float_model).model_copy(update={"quantization": "int8"}), model)
    with pytest.raises(ModelError, match="float32 input but its spec .* says quantization int8"):
        ModelRunner(model, threads=1)
