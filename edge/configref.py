"""The configuration reference, generated from the config models themselves.

`render_reference()` walks `edge.config.Config` with pydantic's own introspection and
writes one Markdown table per section: for every key path its type, default, allowed
values (``Literal`` choices and numeric/length bounds) and the field's ``description``.
Nested models become sections of their own; an optional model (``roi``) also gets a row
of its own (null is a meaningful value); a union of models, discriminated or not, gets
a row listing its variants and one table per variant.

The operator manual holds the output between two marker lines, so the text a reader
sees cannot drift from the code that validates the file::

    python -m edge.configref                              # print the reference
    python -m edge.configref --write docs/operator.md     # replace the text between the markers
    python -m edge.configref --check docs/operator.md     # exit 1 when that text is out of date

Exit codes of the command: 0 done (or up to date), 1 out of date (``--check``), 2 file
unreadable or markers missing. Pure introspection: importing this module opens nothing.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import re
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, Discriminator
from pydantic.fields import FieldInfo

BEGIN_MARKER = "<!-- BEGIN CONFIG REFERENCE -->"
END_MARKER = "<!-- END CONFIG REFERENCE -->"
DEFAULT_DOC = "docs/operator.md"
REGENERATE = f"python -m edge.configref --write {DEFAULT_DOC}"

_NONE = type(None)
_SCALAR_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", bytes: "bytes"}
_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="),
           (annotated_types.MultipleOf, "multiple_of", "multiple of"))


@dataclass(frozen=True)
class KeyRow:
    """One documented key. ``path`` is dotted (``record.mode``; ``[]`` marks a list item); the other
    fields are Markdown-ready text without table escaping."""

    path: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class Table:
    """One section of the reference: a heading (Markdown), an optional intro paragraph, its keys."""

    title: str
    intro: str
    rows: tuple[KeyRow, ...]


# -- introspection ---------------------------------------------------------------------------------


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated[...]`` layers; return the bare type and the metadata they carried."""
    meta: list[Any] = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, meta = args[0], meta + list(args[1:])
    return tp, meta


def _members(tp: Any) -> list[Any]:
    """The alternatives of a union (``A | B``, ``Optional[A]``), each unwrapped; ``[tp]`` otherwise."""
    tp, _ = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(tp):
            out.extend(_members(arg))
        return out
    return [tp]


def _discriminator(field: FieldInfo) -> str | None:
    """The key that tells a union's variants apart, when it is a plain field name.

    pydantic keeps it on the field (``Field(discriminator=...)``, also when given inside
    ``Annotated``), or, for ``Optional[Annotated[Union[...], Field(discriminator=...)]]``, in the
    metadata of the inner ``Annotated``.
    """
    if isinstance(field.discriminator, str):
        return field.discriminator
    bare, meta = _unwrap(field.annotation)
    for arg in get_args(bare):
        meta = meta + _unwrap(arg)[1]
    for m in [field.discriminator, *meta]:
        if isinstance(m, FieldInfo):
            m = m.discriminator
        if isinstance(m, Discriminator):
            m = m.discriminator
        if isinstance(m, str):
            return m
    return None


def _union_variants(tp: Any) -> list[Any]:
    """Model members of a union, including those inside a nested ``Annotated`` union."""
    return [m for m in _members(tp) if _is_model(m)]


def _key(name: str, field: FieldInfo) -> str:
    """The key as written in YAML: the alias when the field has one."""
    return field.alias if isinstance(field.alias, str) and field.alias else name


def _literal_values(model: type[BaseModel], key: str) -> list[Any]:
    """Values a variant's discriminator field may take (its ``Literal`` choices, else its default)."""
    for name, f in model.model_fields.items():
        if _key(name, f) != key and name != key:
            continue
        values = [v for m in _members(f.annotation) if get_origin(m) is Literal for v in get_args(m)]
        if values:
            return values
        if not f.is_required() and f.default_factory is None:
            return [f.default]
    return []


# -- formatting ------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    """A Python value as it is written in the YAML file (flow style)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, enum.Enum):
        return _value(v.value)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        # a string YAML would read as something else (null, true, 5, "") is shown quoted, as it must be written
        return v if v and yaml.safe_load(v) == v else json.dumps(v)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_value(k)}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _code(text: str) -> str:
    return f"`{text}`"


def _type_name(tp: Any) -> str:
    tp, _ = _unwrap(tp)
    if tp is _NONE or tp is None:
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        names: list[str] = []
        for v in get_args(tp):
            n = "null" if v is None else _SCALAR_NAMES.get(type(v), type(v).__name__)
            if n not in names:
                names.append(n)
        return " or ".join(names)
    if origin in (Union, types.UnionType):
        names = []
        for m in _members(tp):
            n = _type_name(m)
            if n not in names:
                names.append(n)
        # null last: "integer or null" reads as "an integer, or nothing"
        names.sort(key=lambda n: n == "null")
        return " or ".join(names)
    if _is_model(tp):
        return "mapping"
    if origin in (list, set, frozenset, Sequence) or tp in (list, set, frozenset):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is tuple or tp is tuple:
        args = get_args(tp)
        if not args:
            return "list"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is dict or tp is dict:
        args = get_args(tp)
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}" if args else "mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "string" if all(isinstance(m.value, str) for m in tp) else tp.__name__
    if tp in _SCALAR_NAMES:
        return _SCALAR_NAMES[tp]
    return getattr(tp, "__name__", str(tp))


def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _bounds(meta: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for m in meta:
        for cls, attr, word in _BOUNDS:
            if isinstance(m, cls):
                out.append(f"{word} {_number(getattr(m, attr))}")
        if isinstance(m, annotated_types.MinLen) and m.min_length > 0:
            out.append(f"length >= {m.min_length}")
        if isinstance(m, annotated_types.MaxLen):
            out.append(f"length <= {m.max_length}")
        if isinstance(m, annotated_types.Interval):
            out.extend(_bounds([annotated_types.Gt(m.gt)] if m.gt is not None else []))
            out.extend(_bounds([annotated_types.Ge(m.ge)] if m.ge is not None else []))
            out.extend(_bounds([annotated_types.Lt(m.lt)] if m.lt is not None else []))
            out.extend(_bounds([annotated_types.Le(m.le)] if m.le is not None else []))
    return out


def _allowed(field: FieldInfo) -> str:
    """Literal/enum choices and bounds of a scalar field, e.g. "`MJPG`, `YUYV`" or "> 0, <= 240"."""
    choices: list[str] = []
    meta = list(field.metadata)
    for m in _members(field.annotation):
        meta += _unwrap(m)[1]
        if get_origin(m) is Literal:
            choices += [_code(_value(v)) for v in get_args(m)]
        elif isinstance(m, type) and issubclass(m, enum.Enum):
            choices += [_code(_value(x)) for x in m]
    for m in get_args(_unwrap(field.annotation)[0]):
        meta += _unwrap(m)[1]
    bounds = ", ".join(dict.fromkeys(_bounds(meta)))
    return "; ".join(p for p in (", ".join(dict.fromkeys(choices)), bounds) if p)


def _default(field: FieldInfo, discriminator: str | None = None) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        if getattr(field, "default_factory_takes_data", False):
            return "computed"
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, BaseModel):
        if discriminator is not None and hasattr(value, discriminator):
            return _code(f"{discriminator}: {_value(getattr(value, discriminator))}")
        return "(the keys below)"
    return _code(_value(value))


def _prose(text: str | None) -> str:
    """One paragraph of a docstring or description as Markdown: ``x`` becomes `x`, whitespace collapsed."""
    if not text:
        return ""
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return " ".join(text.split())


def _intro(model: type[BaseModel]) -> str:
    """The first paragraph of the model's own docstring (inherited ones say nothing about it)."""
    doc = model.__dict__.get("__doc__")
    if not doc:
        return ""
    return _prose(inspect.cleandoc(doc).split("\n\n")[0])


def _cell(text: str) -> str:
    """Escape what would break a Markdown table row (pipes, including inside code spans; newlines)."""
    return " ".join(text.replace("|", r"\|").split())


# -- walking ---------------------------------------------------------------------------------------


def _walk(model: type[BaseModel], prefix: str, title: str, intro: str, tables: list[Table]) -> None:
    rows: list[KeyRow] = []
    children: list[tuple[str, str, type[BaseModel], str]] = []  # (title, prefix, model, intro)
    for name, field in model.model_fields.items():
        key = _key(name, field)
        path = f"{prefix}.{key}" if prefix else key
        members = _members(field.annotation)
        variants = _union_variants(field.annotation)
        listed = [a for m in members if get_origin(m) in (list, tuple, Sequence) for a in get_args(m)
                  if _is_model(_unwrap(a)[0])]
        optional = _NONE in members
        disc = _discriminator(field)
        if len(variants) == 1 and len(members) == 1:
            # a plain section: its keys are the documentation; a row for it would say nothing
            m = variants[0]
            children.append((_code(path), path, m, _intro(m) or _prose(field.description)))
            continue
        allowed = _allowed(field)
        if len(variants) > 1:
            kinds = []
            for v in variants:
                vals = _literal_values(v, disc) if disc else []
                kinds.append(" or ".join(_code(_value(x)) for x in vals) if vals else _code(v.__name__))
            allowed = (f"{_code(disc)}: " if disc else "one of: ") + ", ".join(kinds)
            if optional:
                allowed += "; or `null`"
        rows.append(KeyRow(path, _type_name(field.annotation), _default(field, disc), allowed,
                           _prose(field.description)))
        for v in variants:
            if len(variants) == 1:
                children.append((_code(path), path, v, _intro(v)))
            elif disc:
                vals = " or ".join(_value(x) for x in _literal_values(v, disc)) or v.__name__
                children.append((f"{_code(path)} with {_code(f'{disc}: {vals}')}", path, v, _intro(v)))
            else:
                children.append((f"{_code(path)} as {_code(v.__name__)}", path, v, _intro(v)))
        for item in listed:
            m = _unwrap(item)[0]
            children.append((_code(f"{path}[]") + " (each item)", f"{path}[]", m, _intro(m)))
    if rows:
        tables.append(Table(title, intro, tuple(rows)))
    for child_title, child_prefix, child_model, child_intro in children:
        _walk(child_model, child_prefix, child_title, child_intro, tables)


def reference_tables(model: type[BaseModel] | None = None) -> list[Table]:
    """Every section of ``model`` (default: `edge.config.Config`) in declaration order, depth first."""
    if model is None:
        from edge.config import Config

        model = Config
    tables: list[Table] = []
    _walk(model, "", "Top-level keys", _intro(model), tables)
    return tables


def key_paths(model: type[BaseModel] | None = None) -> list[str]:
    """Every documented key path (``source.width``, ``record.mode``, ...), in reference order."""
    return [r.path for t in reference_tables(model) for r in t.rows]


def render_reference(model: type[BaseModel] | None = None, heading: str = "###") -> str:
    """The reference as Markdown: per section a heading, its docstring's first paragraph and a table."""
    lines = [
        f"<!-- Generated from the models in edge/config.py by `{REGENERATE}`."
        " Edit the field descriptions there, not this text. -->",
    ]
    for t in reference_tables(model):
        lines += ["", f"{heading} {t.title}", ""]
        if t.intro:
            lines += [t.intro, ""]
        lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for r in t.rows:
            cells = (_code(r.path), r.type, r.default, r.allowed, r.description)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# -- the marked section of a document --------------------------------------------------------------


def _span(text: str) -> tuple[int, int]:
    """Start and end offsets of the text between the markers. ValueError when they are missing or odd."""
    if text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise ValueError(f"needs exactly one {BEGIN_MARKER!r} and one {END_MARKER!r} line")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise ValueError(f"{END_MARKER!r} comes before {BEGIN_MARKER!r}")
    return start, end


def extract_section(text: str) -> str:
    """The text between the markers, without surrounding blank lines."""
    start, end = _span(text)
    return text[start:end].strip("\n")


def replace_section(text: str, reference: str) -> str:
    """``text`` with the part between the markers replaced by ``reference`` (markers kept)."""
    start, end = _span(text)
    return text[:start] + "\n" + reference.strip("\n") + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.configref", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="DOC", help="replace the reference between the markers in DOC")
    g.add_argument("--check", metavar="DOC", help="exit 1 when the reference in DOC differs from the models")
    args = p.parse_args(argv)
    reference = render_reference()
    if not (args.write or args.check):
        sys.stdout.write(reference)
        return 0
    doc = Path(args.write or args.check)
    try:
        text = doc.read_text(encoding="utf-8")
        current = extract_section(text)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{doc}: {e}\n")
        return 2
    if args.check:
        if current == reference.strip("\n"):
            return 0
        sys.stderr.write(f"{doc}: the configuration reference differs from edge/config.py; "
                         f"regenerate it with `python -m edge.configref --write {doc}`\n")
        return 1
    new = replace_section(text, reference)
    if new != text:
        doc.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
