"""The documents stay true to the code: the generated config reference, the links, the module map."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from edge import configref

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
OPERATOR = DOCS / "operator.md"


def test_operator_manual_holds_the_current_config_reference():
    committed = configref.extract_section(OPERATOR.read_text(encoding="utf-8"))
    assert committed == configref.render_reference().strip("\n"), (
        "docs/operator.md's configuration reference differs from the models in edge/config.py; "
        f"regenerate it with `{configref.REGENERATE}`"
    )


# -- the renderer, on a small config of its own ----------------------------------------------------


class _Camera(BaseModel):
    """A camera; the first paragraph is the section's intro.

    Later paragraphs are not shown."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["camera"] = "camera"
    device: str = Field("/dev/video0", min_length=1, description="device node | or index")
    fps: float | None = Field(None, gt=0, le=240, description="frames/s")


class _Clip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["clip"]
    path: str = Field(..., description="the ``video`` file")


class _Box(BaseModel):
    """Where to look."""

    x: int = Field(..., ge=0, description="left edge, pixels")


class _Audio(BaseModel):
    level: Literal["quiet", "loud", "off"] = Field("quiet", description="how loud")
    gains: tuple[int, int] = Field((1, 2), description="left, right")


class _Small(BaseModel):
    """A small config."""

    source: Annotated[_Camera | _Clip, Field(discriminator="kind")] = Field(
        default_factory=_Camera, description="where frames come from"
    )
    box: _Box | None = Field(None, description="null = everything")
    audio: _Audio = _Audio()
    name: str = Field("null", description="a string YAML would misread")


def _rows(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("| `")]


def test_renderer_documents_nested_models_literals_defaults_and_descriptions():
    text = configref.render_reference(_Small)
    # the walk's order: the model's own keys, then each section in declaration order, variants by their kind
    headings = [ln for ln in text.splitlines() if ln.startswith("### ")]
    assert headings == [
        "### Top-level keys",
        "### `source` with `kind: camera`",
        "### `source` with `kind: clip`",
        "### `box`",
        "### `audio`",
    ]
    assert _rows(text) == [
        "| `source` | mapping | `kind: camera` | `kind`: `camera`, `clip` | where frames come from |",
        "| `box` | mapping or null | `null` |  | null = everything |",
        '| `name` | string | `"null"` |  | a string YAML would misread |',
        "| `source.kind` | string | `camera` | `camera` |  |",
        r"| `source.device` | string | `/dev/video0` | length >= 1 | device node \| or index |",
        "| `source.fps` | number or null | `null` | > 0, <= 240 | frames/s |",
        "| `source.kind` | string | required | `clip` |  |",
        "| `source.path` | string | required |  | the `video` file |",
        "| `box.x` | integer | required | >= 0 | left edge, pixels |",
        '| `audio.level` | string | `quiet` | `quiet`, `loud`, `"off"` | how loud |',
        "| `audio.gains` | [integer, integer] | `[1, 2]` |  | left, right |",
    ]
    assert "A camera; the first paragraph is the section's intro." in text
    assert "Later paragraphs" not in text
    assert "Where to look." in text
    assert configref.key_paths(_Small)[:3] == ["source", "box", "name"]


def test_renderer_finds_a_discriminator_inside_an_optional_union():
    class Cfg(BaseModel):
        out: Annotated[_Camera | _Clip, Field(discriminator="kind")] | None = None

    rows = _rows(configref.render_reference(Cfg))
    assert rows[0] == "| `out` | mapping or null | `null` | `kind`: `camera`, `clip`; or `null` |  |"
    assert "### `out` with `kind: clip`" in configref.render_reference(Cfg)


def test_write_and_check_replace_only_the_marked_section(tmp_path, capsys):
    doc = tmp_path / "manual.md"
    before, after = "# Manual\n\nhand-written\n\n", "\nafter the reference\n"
    doc.write_text(f"{before}{configref.BEGIN_MARKER}\nstale\n{configref.END_MARKER}{after}")
    assert configref.main(["--check", str(doc)]) == 1
    assert f"python -m edge.configref --write {doc}" in capsys.readouterr().err

    assert configref.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(before + configref.BEGIN_MARKER) and text.endswith(configref.END_MARKER + after)
    assert configref.extract_section(text) == configref.render_reference().strip("\n")
    assert configref.main(["--check", str(doc)]) == 0

    doc.write_text(text.replace(configref.END_MARKER, ""))
    assert configref.main(["--check", str(doc)]) == 2
    assert "END CONFIG REFERENCE" in capsys.readouterr().err


# -- links and the entry page ----------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


_DOCUMENTS = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("doc", _DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_and_a_heading(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not checked here
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: {broken}"


def test_readme_is_an_entry_page_that_links_every_document():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300, "README.md is the entry page: depth belongs in docs/"
    for doc in DOCS.glob("*.md"):
        assert f"](docs/{doc.name})" in readme, f"README.md does not link docs/{doc.name}"
    assert "not a medical device" in readme


def test_every_results_section_is_dated():
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections
    undated = [s for s in sections if not re.search(r"\b20\d\d-\d\d-\d\d\b", s)]
    assert not undated, f"docs/results.md sections without the date they were measured: {undated}"


# -- the module map ----------------------------------------------------------------------------------


def test_architecture_names_what_every_edge_file_owns():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "edge").rglob("*.py")
                   if "__pycache__" not in p.parts)
    unnamed = [f for f in files if f"`{f}`" not in text]
    assert not unnamed, f"docs/architecture.md's module map does not say what these files own: {unnamed}"
    named = set(re.findall(r"`(edge/[\w/]+\.py)`", text))
    gone = sorted(f for f in named if not (REPO / f).exists())
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"
