"""`nerveseg bench`: JSON schema, stages adding up, the overload bound, each input kind, the classic U-Net
built by `nerveseg convert reference` and found in the cache, the targets file, the plot and the exit codes.
Runs are short (about a second); speed targets are printed by the command, never asserted here."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil

import cv2
import pytest

from edge import bench
from edge.bench import models as bench_models
from edge.cli import EXIT_CONFIG, EXIT_MODEL, EXIT_OK, EXIT_SOURCE, main
from edge.errors import ConfigError
from edge.models import default_model_path
from edge.pipeline import STAGES
from edge.runner import ModelRunner
from edge.spec import load_spec

RUN_KEYS = {
    "model": str, "model_role": str, "model_name": str, "model_path": str, "model_sha256": str,
    "quantization": str, "untrained": bool, "interpreter": str, "threads": int, "input": str, "source": str,
    "frame_size": list, "handoff": str, "seconds": float, "frames": int, "captured": int, "dropped": int,
    "fps": float, "frame_period_ms": float, "ratio_fps_to_first": float, "cpu_percent": float,
    "peak_rss_mb": float, "peak_rss_scope": str, "complete": bool, "latency_ms": dict, "stages": dict,
}
OVERLOAD_KEYS = {"source_fps": float, "drop_rate": float, "latency_bound_ms": float, "latency_growth_ms": float,
                 "bounded": bool}
MACHINE_KEYS = {
    "cpu_model": str, "cpu_cores": int, "cpu_usable": int, "cpu_features": list, "arch": str, "os": str,
    "python": str, "interpreter": str, "numpy": str, "opencv": str, "nerveseg": str, "date_utc": str,
}
SHORT = ["--seconds", "1", "--warmup", "0.2"]


def _bench(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", *argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """One short bench of the shipped model on the default inputs, 1 thread, with its overload runs."""
    d = tmp_path_factory.mktemp("bench")
    js, png = d / "bench.json", d / "bench.png"
    code, text = _bench(["--model", "shipped", "--threads", "1", *SHORT, "--json", str(js), "--plot", str(png)])
    assert code == EXIT_OK, text
    return json.loads(js.read_text()), text, png


def _check_types(d: dict, keys: dict, where: str) -> None:
    for k, t in keys.items():
        assert k in d, f"{where}: missing {k!r}"
        ok = isinstance(d[k], t) or (t is float and isinstance(d[k], int) and not isinstance(d[k], bool))
        assert ok, f"{where}: {k!r} is {type(d[k]).__name__}, expected {t.__name__}"


def _stat(d: dict, where: str) -> None:
    for k in ("p50", "p95", "p99", "mean"):
        assert isinstance(d[k], float) and d[k] >= 0, f"{where}.{k}: {d[k]!r}"
    assert d["p50"] <= d["p95"] <= d["p99"], where


def test_json_schema_runs_and_machine_header(phantom):
    report, _, _ = phantom
    assert report["schema_version"] == bench.SCHEMA_VERSION
    assert {"machine", "runs", "overload", "targets", "models", "settings", "notes"} <= set(report)
    _check_types(report["machine"], MACHINE_KEYS, "machine")
    assert report["machine"]["interpreter"].split()[0] in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    assert "board" in report["machine"] and "os_pretty_name" in report["machine"]
    shipped_sha = load_spec(default_model_path()).tflite_sha256
    assert [(r["input"], r["threads"]) for r in report["runs"]] == [
        ("us-580x420", 1), ("hdmi-1920x1080", 1), ("mjpeg-1920x1080", 1)]
    for i, run in enumerate(report["runs"] + report["overload"]):
        where = f"run {i}"
        _check_types(run, RUN_KEYS, where)
        assert run["model_sha256"] == shipped_sha and run["quantization"] == "int8"
        assert run["frames"] > 0 and run["fps"] > 0 and run["cpu_percent"] > 0 and run["peak_rss_mb"] > 10
        _stat(run["latency_ms"], f"{where}.latency_ms")
        assert run["latency_ms"]["max"] >= run["latency_ms"]["p99"]
        assert set(STAGES) | {"total"} <= set(run["stages"]), run["stages"].keys()
        for name, st in run["stages"].items():
            _stat(st, f"{where}.stages.{name}")
    for run in report["runs"]:
        assert run["handoff"] == "lossless" and run["dropped"] == 0
        assert abs(run["captured"] - run["frames"]) <= 2  # frames in flight at the window's edges
    for run in report["overload"]:
        _check_types(run, OVERLOAD_KEYS, "overload")
        assert run["handoff"] == "latest"
    assert [t["name"] for t in report["targets"]] == ["fps", "latency_p99", "speedup_vs_classic"]
    assert all(t["status"] in ("PASS", "FAIL", "SKIP") for t in report["targets"])
    # The targets are defined at 2 threads and against the classic U-Net: neither is in this run.
    assert {t["status"] for t in report["targets"]} == {"SKIP"}


def test_stage_times_add_up_to_the_frame_time(phantom):
    report, _, _ = phantom
    for run in report["runs"] + report["overload"]:
        st = run["stages"]
        total = st["total"]
        parts = [st[s] for s in STAGES if s != "capture"]  # capture runs on its own thread, in parallel
        # Laps chain from the frame's start to its end: the means add up to the total's mean.
        assert sum(p["mean"] for p in parts) == pytest.approx(total["mean"], rel=0.05, abs=0.05)
        # Medians do not add up (when the capture thread competes for the cores, each stage is slow on other
        # frames, so the sum of the medians falls below the median total), but they never exceed the total
        # by much: no stage is counted twice.
        assert sum(p["p50"] for p in parts) <= 1.25 * total["p50"] + 0.3
        # A frame cannot be processed faster than its own stages take: period >= total, one frame at a time.
        assert run["frame_period_ms"] >= 0.95 * total["mean"]


def test_overload_latency_is_bounded_and_frames_are_dropped(phantom):
    report, _, _ = phantom
    throughput = {r["input"]: r for r in report["runs"]}
    assert {r["input"] for r in report["overload"]} == set(throughput)
    for run in report["overload"]:
        assert run["source_fps"] > throughput[run["input"]]["fps"]  # the source really is faster
        assert run["dropped"] > 0 and 0 < run["drop_rate"] < 1
        assert run["captured"] >= run["frames"] + run["dropped"] - 2
        # Newest-wins: at most one source period of age plus processing; a queue would grow by a period
        # per frame (hundreds of ms within the second measured here).
        period = run["stages"]["total"]["p99"]
        assert run["latency_ms"]["p99"] < 2 * period + 2 * 1000 / run["source_fps"] + 30, run["latency_ms"]
        assert run["latency_growth_ms"] < period + 10
        assert run["bounded"] is True


def test_each_input_kind_has_its_frame_size_and_roi(phantom):
    report, _, _ = phantom
    runs = {r["input"]: r for r in report["runs"]}
    us, hd = runs["us-580x420"], runs["hdmi-1920x1080"]
    assert us["frame_size"] == [580, 420] and us["roi"] == [0, 0, 580, 420]
    assert hd["frame_size"] == [1920, 1080]
    x, y, w, h = hd["roi"]  # the phantom's image inside its synthetic machine UI
    assert x > 0 and y > 0 and x + w < 1920 and y + h < 1080
    assert "UI around image" in hd["source_description"]
    # the dongle's MJPG: the same frame and ROI, and every frame decoded on the CPU in the capture stage
    mj = runs["mjpeg-1920x1080"]
    assert mj["frame_size"] == [1920, 1080] and mj["roi"] == hd["roi"]
    assert "as MJPG q85" in mj["source_description"] and "decoded per frame" in mj["source_description"]
    assert mj["stages"]["capture"]["p50"] > 2.0  # a 1080p JPEG decode costs milliseconds on any CPU
    assert any("JPEG decode" in n for n in report["notes"])


def test_terminal_report_has_the_machine_tables_and_targets(phantom):
    report, text, _ = phantom
    needles = ["cpu       :", "software  :", "throughput", "stage ms", "overload (", "targets"]
    for needle in needles + (["notes"] if report["notes"] else []):
        assert needle in text, needle
    target_lines = [ln.split()[0] for ln in text.split("targets\n", 1)[1].splitlines()[:3]]
    assert set(target_lines) <= {"PASS", "FAIL", "SKIP"} and len(target_lines) == 3


def test_plot_is_a_png_opencv_can_read(phantom):
    _, _, png = phantom
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 1400 and img.shape[0] > 500
    assert (img < 250).any()  # something is drawn


def test_real_lung_clip_scaled_to_a_video_out_frame(lung_clips, tmp_path):
    clip = lung_clips[-1]
    js = tmp_path / "lung.json"
    code, text = _bench(["--source", str(clip), "--input", "hdmi-1920x1080", "--model", "shipped", "--threads", "1",
                         "--seconds", "0.5", "--warmup", "0.1", "--no-overload", "--json", str(js)])
    assert code == EXIT_OK, text
    report = json.loads(js.read_text())
    (run,) = report["runs"]
    assert run["source"] == f"file:{clip.name}" and run["input"] == "hdmi-1920x1080"
    assert run["frame_size"] == [1920, 1080] and run["roi"] is None  # the scaled clip fills the frame
    assert "scaled from" in run["source_description"]
    assert run["frames"] > 0 and run["dropped"] == 0 and report["overload"] == []


def test_parse_input_forms():
    assert bench.parse_input("hdmi-1920x1080") == bench.InputSpec("hdmi-1920x1080", "hdmi", (1920, 1080))
    assert bench.parse_input("US-580x420").size == (580, 420)
    assert bench.parse_input("native").size is None
    for bad in ("1920x1080", "hdmi-0x10", "vga"):
        with pytest.raises(ConfigError, match="allowed"):
            bench.parse_input(bad)


def test_default_models_skip_what_is_missing_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty cache: no classic U-Net built
    models, notes = bench.resolve_models(None)
    assert models[0].path == default_model_path() and models[0].role == "shipped"
    assert "classic-unet" not in [m.role for m in models]
    assert any("classic-unet skipped" in n and "nerveseg convert reference" in n for n in notes), notes
    twin = bench.float32_twin_path(default_model_path())
    assert twin.name == "nerveseg-float32.tflite"
    if not twin.is_file():
        assert any("float32 twin skipped" in n for n in notes), notes


def test_float32_twin_is_found_beside_the_configured_model(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = default_model_path()
    for stem in ("m", "m-float32"):  # a byte copy stands in for the twin: same hash, its spec still matches
        shutil.copy(src, tmp_path / f"{stem}.tflite")
        shutil.copy(src.with_suffix(".yaml"), tmp_path / f"{stem}.yaml")
    models, notes = bench.resolve_models(None, configured=str(tmp_path / "m.tflite"))
    assert [(m.label, m.role) for m in models] == [("m.tflite", "file"), ("m-float32.tflite", "float32-twin")]
    # The command a skipped classic U-Net names builds the one matching this model, not the shipped one.
    assert any(f"nerveseg convert reference --model {tmp_path / 'm.tflite'}" in n for n in notes), notes


def test_explicit_classic_unet_not_built_is_a_config_error_naming_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["bench", "--model", "shipped", "classic-unet", "--classic-filters", "24", "--threads", "1",
                 "--input", "us-580x420", *SHORT, "--no-overload"])
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--model classic-unet" in err and "nerveseg convert reference --filters 24" in err, err
    assert str(tmp_path / "cache" / "nerveseg" / "bench") in err


def test_targets_come_from_the_data_file_and_it_is_validated(phantom, tmp_path):
    report, _, _ = phantom
    targets = bench.load_targets()
    assert bench.TARGETS_FILE.name == "targets.yaml" and bench.TARGETS_FILE.parent.name == "bench"
    by_name = {t["name"]: t for t in report["targets"]}
    assert by_name["fps"]["threshold"] == targets.fps_min
    assert by_name["latency_p99"]["threshold"] == targets.latency_p99_max_ms
    assert by_name["speedup_vs_classic"]["threshold"] == targets.speedup_min
    assert f"{targets.input}, {targets.threads} threads" in by_name["fps"]["detail"]

    good = bench.TARGETS_FILE.read_text()
    for bad, needle in (
        (good + "fps_max: 90\n", "fps_max: unknown key"),
        (good.replace("threads: 2", "threads: 0"), "threads: got 0"),
        (good.replace("input: hdmi-1920x1080", "input: vga"), "input: got 'vga'"),
        (good.replace("fps_min: 60.0", "fps_min: fast"), "fps_min: got 'fast'"),
        ("- 60\n", "must be a mapping"),
    ):
        path = tmp_path / "targets.yaml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match="targets.yaml") as e:
            bench.load_targets(path)
        assert any(needle in p for p in e.value.problems), (needle, e.value.problems)
    path.write_text(good.replace("fps_min: 60.0", "fps_min: 30"))
    assert bench.load_targets(path).fps_min == 30.0


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None,
                    reason="building the classic U-Net needs TensorFlow (a workstation step)")
def test_classic_unet_built_by_the_workstation_command_then_benchmarked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "nerveseg" / "bench"
    shipped = load_spec(default_model_path())
    assert main(["convert", "reference"]) == EXIT_OK
    assert "built" in capsys.readouterr().out
    (path,) = cache.glob("*.tflite")
    assert path == bench.classic_unet_plan(shipped).path and path.with_suffix(".yaml").is_file()
    assert not list(cache.glob(".build-*"))  # the scratch folder is gone
    spec = load_spec(path)
    opts = spec.provenance["builder_options"]
    assert spec.quantization == "float32" and spec.untrained and opts["skips"] == 4 and opts["batch_norm"]
    assert opts["base_filters"] == bench.builder_options(shipped)["base_filters"]
    assert spec.preprocess == shipped.preprocess
    assert spec.provenance["macs"] > shipped.provenance["macs"]
    assert ModelRunner(path, threads=1).input_hw == (shipped.preprocess.height, shipped.preprocess.width)

    # Built once: a second call finds it and leaves it as it is.
    mtime = path.stat().st_mtime_ns
    assert main(["convert", "reference"]) == EXIT_OK
    assert "already there" in capsys.readouterr().out and path.stat().st_mtime_ns == mtime

    js = tmp_path / "c.json"
    code, text = _bench(["--model", "shipped", "classic-unet", "--threads", "2", "--input", "hdmi-1920x1080",
                         "--seconds", "0.4", "--warmup", "0.1", "--no-overload", "--json", str(js)])
    assert code == EXIT_OK, text
    report = json.loads(js.read_text())
    assert [r["model_role"] for r in report["runs"]] == ["shipped", "classic-unet"]
    assert report["runs"][1]["model_path"] == str(path)
    assert report["runs"][1]["quantization"] == "float32" and report["runs"][1]["ratio_fps_to_first"] > 0
    speedup = report["targets"][2]
    assert speedup["name"] == "speedup_vs_classic" and speedup["status"] in ("PASS", "FAIL")
    assert "RANDOM weights" in text

    # The benchmark only looks: a broken copy is reported with the command that builds it again.
    path.write_bytes(b"not a model")
    assert main(["bench", "--model", "classic-unet", "--threads", "1", *SHORT]) == EXIT_CONFIG
    assert "nerveseg convert reference --force" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--model", "/nonexistent/model.tflite"], EXIT_MODEL),
        (["--source", "/nonexistent/clip.mp4"], EXIT_SOURCE),
        (["--source", "file:/nonexistent/clip.mp4"], EXIT_SOURCE),
        (["--input", "vga"], EXIT_CONFIG),
        (["--threads", "0"], EXIT_CONFIG),
        (["--seconds", "0"], EXIT_CONFIG),
        (["--json", "/nonexistent/dir/out.json"], EXIT_CONFIG),
    ],
)
def test_exit_codes(argv, code, capsys):
    assert main(["bench", *argv]) == code
    assert "nerveseg bench:" in capsys.readouterr().err


def test_explicit_float32_twin_that_is_missing_is_a_model_error(tmp_path, monkeypatch, capsys):
    # An install whose model has no float32 twin beside it (the package ships one: see the last line).
    import shutil

    model = tmp_path / "nerveseg.tflite"
    shutil.copy(default_model_path(), model)
    shutil.copy(default_model_path().with_suffix(".yaml"), model.with_suffix(".yaml"))
    assert bench.float32_twin_path(default_model_path()).is_file()
    monkeypatch.setattr(bench_models, "default_model_path", lambda: model)
    assert main(["bench", "--model", "shipped-float32"]) == EXIT_MODEL
    assert "nerveseg-float32.tflite" in capsys.readouterr().err

