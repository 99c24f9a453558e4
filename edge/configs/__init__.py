"""Example configs shipped with the package (`nerveseg check-config` validates each in the tests)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def example_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))
