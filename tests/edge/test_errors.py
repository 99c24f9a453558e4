"""Exit codes come from one mechanism: the error class carries its code, `main` returns it."""

from __future__ import annotations

import argparse

import pytest

import edge.cli as cli
import edge.errors as errors
from edge.plugin import common_options, source_override

DOCUMENTED = {
    "EXIT_OK": 0, "EXIT_ERROR": 1, "EXIT_CONFIG": 2, "EXIT_MODEL": 3, "EXIT_SOURCE": 4, "EXIT_SINK": 5,
    "EXIT_DISAGREE": 6, "EXIT_SESSION": 7, "EXIT_NOT_RUNNING": 8,
}


def _error_classes() -> list[type[errors.NervesegError]]:
    return [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.NervesegError)]


def _check_config_raises(monkeypatch, error: Exception) -> None:
    """Make `nerveseg check-config` raise ``error`` from inside the command, as a library call would."""

    def command(_args: argparse.Namespace) -> int:
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["check-config"].set_defaults(func=command)


def test_every_error_class_carries_a_documented_code():
    codes = set(DOCUMENTED.values())
    for cls in _error_classes():
        assert "exit_code" in vars(cls) or cls is errors.NervesegError, cls
        assert cls.exit_code in codes, cls
        assert f"{cls.exit_code} " in errors.__doc__, cls
    for name, code in DOCUMENTED.items():
        assert getattr(errors, name) == code and getattr(cli, name) == code


@pytest.mark.parametrize("cls", [c for c in _error_classes() if c not in (errors.NervesegError, errors.ConfigError)])
def test_main_returns_the_code_of_the_error_raised(cls, monkeypatch, capsys):
    _check_config_raises(monkeypatch, cls("it went wrong in a known way"))
    assert cli.main(["check-config", "x.yaml"]) == cls.exit_code
    err = capsys.readouterr().err
    assert "it went wrong in a known way" in err and "Traceback" not in err


def test_a_library_bug_is_exit_1_with_its_traceback_logged(monkeypatch, caplog):
    _check_config_raises(monkeypatch, ValueError("internal inconsistency"))
    assert cli.main(["check-config", "x.yaml"]) == errors.EXIT_ERROR
    assert "internal inconsistency" in caplog.text and "a bug" in caplog.text


def test_status_without_a_health_file_is_not_running(tmp_path, capsys):
    assert cli.main(["status", "--file", str(tmp_path / "none.json")]) == errors.EXIT_NOT_RUNNING
    assert "none.json" in capsys.readouterr().err


def test_plugin_helpers_give_every_command_the_same_options():
    parser = argparse.ArgumentParser(parents=[common_options()])
    assert parser.parse_args(["--log-level", "DEBUG"]).log_level == "DEBUG"
    assert source_override(None) == {} and source_override("phantom") == {"spec": "phantom"}
    sub = cli.build_parser()._subparsers._group_actions[0].choices
    for name in ("run", "demo", "bench", "review", "train", "eval", "convert", "calibrate"):
        if name in sub:  # workstation commands are there when their package loads
            assert any("--log-level" in a.option_strings for a in sub[name]._actions), name
