"""Repository-level promises: CI runs the README's test command; edge never imports TensorFlow; every config
key is documented."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Union, get_args, get_origin

REPO = Path(__file__).resolve().parents[1]


def _readme_command(label: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"# {label}\n(.+?)\n", text)
    assert m, f"README has no '# {label}' command"
    return m.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    cmd = _readme_command("2. run the tests")
    ci_lines = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert cmd in ci_lines
    # the emulated arm64 check runs after the tests, on the venv the test command made
    assert ci_lines.index("bash .ci/arm64") > ci_lines.index(cmd)


def test_edge_never_imports_tensorflow_or_matplotlib():
    code = (
        "import sys, importlib, pkgutil, edge\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    importlib.import_module(m.name)\n"
        "import edge.cli; edge.cli.build_parser()  # registers train/eval/convert plugins\n"
        "bad = [m for m in sys.modules if m in ('tensorflow', 'matplotlib') or m.startswith(('tensorflow.', "
        "'keras', 'matplotlib.'))]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_no_edge_module_imports_training_packages():
    for py in (REPO / "edge").rglob("*.py"):
        src = py.read_text()
        pattern = r"^\s*(from|import)\s+(train|convert|calibration|tensorflow|keras|matplotlib)\b"
        assert not re.search(pattern, src, re.M), py


def _config_keys(model, prefix: str = "") -> list[str]:
    """Every key path of a config model, walking into nested models, optional models and unions of models
    (each kind of a source or sink), by pydantic's own field annotations."""
    from pydantic import BaseModel

    def members(tp):
        while get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        if get_origin(tp) in (Union, types.UnionType):
            return [m for a in get_args(tp) for m in members(a)]
        return [tp]

    keys = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        models = [m for m in members(field.annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
        if not models or len(members(field.annotation)) > 1:
            keys.append(path)  # a value, an optional section (roi) or a choice of kinds
        for m in models:
            keys += _config_keys(m, path)
    return keys


def test_every_config_key_is_documented_in_the_operator_manual():
    from edge.config import Config

    manual = (REPO / "docs" / "operator.md").read_text()
    keys = _config_keys(Config)
    assert "source.kind" in keys and "record.mode" in keys, keys  # the walk itself reaches the sections
    missing = sorted({k for k in keys if f"`{k}`" not in manual})
    assert not missing, (
        f"docs/operator.md lacks config keys {missing}: regenerate its reference with "
        "`python -m edge.configref --write docs/operator.md`"
    )
