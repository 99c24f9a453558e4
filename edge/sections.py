"""The base of every config section model, and the sections whose ``kind`` picks an implementation.

`Section`: frozen, unknown keys rejected, defaults validated.

`KindSection`: a source or a sink. Each kind has its own model (only the keys
that kind uses), told apart by the field ``kind``. A one-string ``spec``
(``file:clip.mp4``, ``v4l2:/dev/video0``) may stand for ``kind`` plus the kind's
main argument (`KindSection.spec_arg`); the other keys are then checked
against that kind. ``spec`` is input only: a model stores ``kind`` and its
fields, and gives the one-string form back as the property ``spec``.

`Registry`: kind -> (config model, implementation module, class name), one per
package (`edge.sources.SOURCES`, `edge.sinks.SINKS`). Implementation modules are
imported only when a kind is opened. `Registry.annotation` is the pydantic type
of the config section (a union told apart by ``kind``), with a before-validator
that turns a spec into its kind first.

Faults found here are raised as ``PydanticCustomError("config_key", ...)`` with
``ctx = {key, value, reason}``: the key inside the section that is wrong (e.g.
``spec``), so `edge.config.format_validation_error` can name ``source.spec``
although the check runs on the whole section.

Imports pydantic only: no OpenCV, no device package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, NamedTuple, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator
from pydantic_core import PydanticCustomError

KEY_ERROR = "config_key"


class Section(BaseModel):
    """A config section: unknown keys are errors, values are immutable, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def key_error(key: str, value: Any, reason: str) -> PydanticCustomError:
    """A fault of ``key`` inside the section being validated (see the module docstring)."""
    return PydanticCustomError(KEY_ERROR, "{reason}", {"key": key, "value": value, "reason": reason})


def split_spec(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, str]:
    """Split a one-string spec ``kind[:arg]`` into ``(kind, arg)``; ``arg`` may be ''. The kind is lower-cased.

    Raises ValueError naming the allowed kinds when the kind is unknown.
    """
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        raise ValueError(f"unknown {what} kind {kind!r} in {spec!r}; allowed kinds: {', '.join(kinds)}")
    return kind, arg.strip()


class KindSection(Section):
    """A section with one model per kind (subclasses set ``kind`` as a one-value Literal with that default).

    Class settings (not config keys):
        section: "source" or "sink", for messages.
        spec_arg: the field a spec's text after ':' fills (``device``, ``path``, ``camera``); None = the
            kind takes no argument.
        spec_example: a spec of this kind, shown when one is malformed.
    """

    section: ClassVar[str] = "section"
    spec_arg: ClassVar[str | None] = None
    spec_example: ClassVar[str] = ""

    kind: str

    @classmethod
    def kind_name(cls) -> str:
        return cls.model_fields["kind"].default

    @classmethod
    def input_keys(cls) -> list[str]:
        """Every key this kind accepts: ``spec`` and its fields."""
        return ["spec", *cls.model_fields]

    @model_validator(mode="before")
    @classmethod
    def _expand_spec(cls, data: Any) -> Any:
        """``{spec: "kind:arg", ...}`` -> ``{kind: kind, <spec_arg>: arg, ...}``, checked against this kind."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        own = cls.kind_name()
        if isinstance(data.get("kind"), str):
            data["kind"] = data["kind"].strip().lower()
        if data.get("spec", "") is None:
            del data["spec"]  # YAML reads `spec: null` as nothing: the default (for a sink, the null sink)
        if "spec" not in data:
            return data
        spec = data.pop("spec")
        if not isinstance(spec, str):
            raise key_error("spec", spec, f"a {cls.section} spec is a string, e.g. {cls.spec_example!r}")
        kind, _, arg = spec.partition(":")
        kind, arg = kind.strip().lower(), arg.strip()
        if kind != own:
            if "kind" in data:
                raise key_error("spec", spec, f"names kind {kind!r} but kind is {data['kind']!r}; give one of them")
            raise key_error("spec", spec, f"this is the {own} {cls.section}; its spec is like {cls.spec_example!r}")
        data["kind"] = kind
        name = cls.spec_arg
        if arg:
            if name is None:
                raise key_error("spec", spec, f"the {kind} {cls.section} takes nothing after ':'; write {kind!r}")
            if name in data and str(data[name]) != arg:
                raise key_error("spec", spec, f"gives {name} {arg!r} but {name} is {data[name]!r}; give one of them")
            data[name] = arg
        elif name is not None and name not in data and cls.model_fields[name].is_required():
            raise key_error("spec", spec, f"the {kind} {cls.section} needs a {name}, e.g. {cls.spec_example!r}")
        return data

    @property
    def spec(self) -> str:
        """The one-string form, ``kind:arg`` (``kind`` alone for kinds without an argument)."""
        arg = getattr(self, self.spec_arg) if self.spec_arg else None
        return self.kind if arg is None or arg == "" else f"{self.kind}:{arg}"


class Registered(NamedTuple):
    """One kind: its config model, and where its implementation lives (imported on first use)."""

    config: type[KindSection]
    module: str
    name: str

    def load(self) -> type:
        """Import the implementation module and return the class (this is where OpenCV etc. get loaded)."""
        return getattr(importlib.import_module(self.module), self.name)


class Registry:
    """kind -> `Registered`, for one section ("source" or "sink"), with the default kind."""

    def __init__(self, section: str, default: str, entries: dict[str, Registered]) -> None:
        if default not in entries:
            raise ValueError(f"default kind {default!r} is not registered")
        for kind, entry in entries.items():
            if entry.config.kind_name() != kind:
                raise ValueError(f"{entry.config.__name__} has kind {entry.config.kind_name()!r}, registered as "
                                 f"{kind!r}")
        self.section = section
        self.default = default
        self.entries = dict(entries)
        models = tuple(e.config for e in entries.values())
        #: the pydantic type of the section: a union told apart by ``kind``; a spec is turned into its kind first
        self.annotation = Annotated[Union[models], Field(discriminator="kind"), BeforeValidator(self.pick_kind)]  # noqa: UP007 - a runtime tuple of models
        self._adapter: TypeAdapter | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __getitem__(self, kind: str) -> Registered:
        return self.entries[kind]

    def __iter__(self):
        return iter(self.entries)

    def pick_kind(self, value: Any) -> Any:
        """Before-validator of the section: settle ``kind`` (from ``spec``, else the default) so the union
        can pick the model; the model itself then checks the rest.

        A bare string stands for ``{spec: string}``; ``spec: null`` (YAML for nothing) for no spec.
        """
        if isinstance(value, str):
            value = {"spec": value}
        if isinstance(value, KindSection):
            return value
        if not isinstance(value, Mapping):
            raise PydanticCustomError(
                KEY_ERROR, "{reason}",
                {"key": "", "value": value, "reason": f"a {self.section} is a mapping like {{spec: "
                 f"{self.entries[self.default].config.spec_example!r}}} or {{kind: ..., ...}}, or a spec string"},
            )
        value = dict(value)
        if "spec" in value and value["spec"] is None:
            del value["spec"]  # `spec: null` in YAML: the default kind, which for a sink is the one named null
        allowed = ", ".join(self.kinds)
        if "kind" in value:
            kind = value["kind"]
            if not isinstance(kind, str) or kind.strip().lower() not in self.entries:
                raise key_error("kind", kind, f"unknown {self.section} kind; allowed kinds: {allowed}")
            kind = kind.strip().lower()
        elif "spec" in value:
            spec = value["spec"]
            if not isinstance(spec, str):
                raise key_error("spec", spec, f"a {self.section} spec is a string like "
                                f"{self.entries[self.default].config.spec_example!r}; allowed kinds: {allowed}")
            try:
                kind, _ = split_spec(spec, self.kinds, self.section)
            except ValueError as e:
                raise key_error("spec", spec, str(e)) from None
        else:
            kind = self.default
        value["kind"] = kind
        return value

    def parse(self, data: Any) -> KindSection:
        """Validate one section (a mapping, a spec string or a model) into its kind's model.

        Raises pydantic's ValidationError (locations start with the kind's tag).
        """
        if self._adapter is None:
            self._adapter = TypeAdapter(self.annotation)
        return self._adapter.validate_python(data)

    def kind_of_key(self, key: str) -> list[str]:
        """The kinds that have config key ``key`` (for messages)."""
        return [k for k, e in self.entries.items() if key in e.config.model_fields]
