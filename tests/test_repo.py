"""Repository-level promises: CI runs the README's test command; edge never imports TensorFlow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_every_config_key_is_documented_in_readme():
    from pydantic import BaseModel

    from edge.config import Config

    readme = (REPO / "README.md").read_text()
    missing = []
    for section, field in Config.model_fields.items():
        ann = field.annotation
        models = [c for c in getattr(ann, "__args__", (ann,)) if isinstance(c, type) and issubclass(c, BaseModel)]
        # a section is documented key by key; roi and plain values (profile) as one key
        keys = [f"{section}.{k}" for k in models[0].model_fields] if models and section != "roi" else [section]
        missing += [k for k in keys if f"`{k}`" not in readme]
    assert not missing, f"README configuration reference lacks: {missing}"
