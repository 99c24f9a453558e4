"""Reading YAML that a person or a program handed us, with bounds.

Configs, site profiles and model specs are small, shallow mappings. A file that is not
(a typo'd ``[[[[...`` a thousand deep, or a few hundred bytes of nested aliases that
expand to gigabytes) must fail with a clear message, not a RecursionError traceback
or an out-of-memory kill. `load_yaml` bounds the text's size, the nesting depth and
the expanded size of the document, and raises `YamlTooComplex` (a `yaml.YAMLError`,
so callers' existing YAML-error handling turns it into their own error and exit code).
`quote` bounds the length of a value an error message repeats back.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a config, profile or spec is a few kB
MAX_DEPTH = 32  # nesting of mappings and lists; ours need 4
MAX_NODES = 100_000  # scalars, mappings and lists after expanding aliases
QUOTE_CHARS = 80


class YamlTooComplex(yaml.YAMLError):
    """The document exceeds a bound of `load_yaml`. ``problem`` says which, in words."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than `MAX_DEPTH` while composing (before any recursion)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlTooComplex(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1}): "
                                     "a nerveseg file is a shallow mapping")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _count_nodes(node: Any, budget: int) -> int:
    """Nodes of a constructed document counting every alias use again; stops once over ``budget``."""
    seen = 0
    stack = [node]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return seen
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
    return seen


def load_yaml(text: str) -> Any:
    """Parse ``text`` as safe YAML within the module's bounds. Raises `yaml.YAMLError` (incl. `YamlTooComplex`)."""
    if len(text) > MAX_BYTES:
        raise YamlTooComplex(f"{len(text)} characters: more than {MAX_BYTES} (a nerveseg file is a few kB)")
    loader = _BoundedLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise YamlTooComplex(f"expands to more than {MAX_NODES} values (nested aliases?): refused")
    return data


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long it was."""
    if isinstance(value, (dict, list, tuple, set)) and _count_nodes(value, 1000) > 1000:
        return f"<a {type(value).__name__} too large to show>"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"
