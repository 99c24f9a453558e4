"""Which models a benchmark compares, and where the classic reference U-Net is kept.

``--model`` values (several allowed): a ``.tflite`` path (its spec ``.yaml`` beside it), or

    shipped          edge/models/nerveseg.tflite (the model under test by default: int8)
    shipped-float32  edge/models/nerveseg-float32.tflite: the same network in float32, when it is there
    classic-unet     the classic 4-skip U-Net, float32, same input size, preprocessing and base filters
                     as the first model, BatchNorm, RANDOM weights (timing does not depend on weight
                     values), found in $XDG_CACHE_HOME/nerveseg/bench (default ~/.cache/nerveseg/bench)

Default: the configured model (``model.path`` of ``--config``) or the shipped one, its ``-float32`` twin
beside it, and the classic U-Net. A default that is not there is skipped with a one-line note; a model path
that does not exist is an error (exit 3), and an explicit ``classic-unet`` that has not been built is a
`ConfigError` (exit 2) naming the command that builds it.

The classic U-Net is built on a workstation, with TensorFlow, by ``nerveseg convert reference``
(`convert.reference`), which writes it into the same cache under the name `classic_unet_plan` gives it; copy
that file and its ``.yaml`` into the cache of a box without TensorFlow. The benchmark only looks for it:
`edge` never imports TensorFlow or the workstation packages, and the measured process never holds them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edge import paths
from edge.errors import ConfigError, ModelError
from edge.models import default_model_path
from edge.spec import ModelSpec, load_spec, sha256_file

MODEL_ALIASES = ("shipped", "shipped-float32", "classic-unet")
FLOAT32_SUFFIX = "-float32"
CLASSIC_SKIPS = 4
CLASSIC_SEED = 0
DEFAULT_CLASSIC_FILTERS = 16  # when the reference's spec does not record its own
#: The workstation command that builds the classic U-Net into the cache (`convert.reference`).
REFERENCE_COMMAND = "nerveseg convert reference"


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark. label: short display name; role: shipped | float32-twin | classic-unet | file;
    sha256: of the .tflite file (hex)."""

    label: str
    role: str
    path: Path
    spec: ModelSpec
    sha256: str

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates per frame from the spec's provenance, when recorded."""
        v = self.spec.provenance.get("macs")
        return int(v) if isinstance(v, (int, float)) else None


def float32_twin_path(model_path: str | Path) -> Path:
    """``dir/name.tflite`` -> ``dir/name-float32.tflite`` (the same network in float32, shipped beside it)."""
    p = Path(model_path)
    return p.with_name(p.stem + FLOAT32_SUFFIX + p.suffix)


def cache_dir() -> Path:
    """Where built benchmark models are kept: ``$XDG_CACHE_HOME/nerveseg/bench`` or ``~/.cache/nerveseg/bench``."""
    return paths.cache_dir() / "bench"


def builder_options(spec: ModelSpec) -> dict:
    """The model builder's options recorded in a spec: ``options`` (training) or ``builder_options`` (placeholder)."""
    return spec.provenance.get("options") or spec.provenance.get("builder_options") or {}


def _load_model(path: Path, label: str, role: str) -> BenchModel:
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    return BenchModel(label=label, role=role, path=path, spec=load_spec(path), sha256=sha256_file(path))


# -- the classic reference U-Net --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassicPlan:
    """The classic U-Net that matches one model under test: where it lives and how it is built.

    path: the cached ``.tflite`` (its spec ``.yaml`` beside it); the name carries a hash of ``builder``,
    the preprocessing and the seed, so a change of any of them is a different file. builder: keyword
    arguments of ``train.models.build_unet`` (``input_shape`` as a list). spec: the spec to write beside it.
    """

    path: Path
    filters: int
    builder: dict
    spec: ModelSpec
    seed: int = CLASSIC_SEED


def classic_unet_plan(reference: ModelSpec, base_filters: int | None = None, root: Path | None = None) -> ClassicPlan:
    """The classic 4-skip float32 U-Net matching ``reference``, cached under ``root`` (default `cache_dir`).

    Same input size, preprocessing and thresholds as ``reference``; ``base_filters``, else those recorded in
    its provenance (`builder_options`; `DEFAULT_CLASSIC_FILTERS` when absent; the original U-Net design has
    64); BatchNorm, plain 3x3 convs, transposed-conv upsampling, batch 1; random weights (seed 0).
    Raises ValueError (with the reason) when the input size is not divisible by 2**4, which 4 poolings need.
    """
    pp = reference.preprocess
    step = 2**CLASSIC_SKIPS
    if pp.height % step or pp.width % step:
        raise ValueError(f"the input {pp.width}x{pp.height} of {reference.name} is not divisible by {step}, "
                         "which 4 poolings need")
    filters = base_filters or builder_options(reference).get("base_filters", DEFAULT_CLASSIC_FILTERS)
    filters = filters if isinstance(filters, int) and filters > 0 else DEFAULT_CLASSIC_FILTERS
    builder = {
        "input_shape": [pp.height, pp.width, 1],
        "base_filters": filters,
        "skips": CLASSIC_SKIPS,
        "batch_norm": True,
        "conv": "plain",
        "upsample": "transpose",
        "batch_size": 1,
    }
    key_src = json.dumps({"v": 1, "builder": builder, "preprocess": pp.model_dump(mode="json"),
                          "seed": CLASSIC_SEED}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    root = root or cache_dir()
    spec = ModelSpec(
        name=f"classic-unet-f{filters}-random",
        untrained=True,
        quantization="float32",
        preprocess=pp,
        thresholds=reference.thresholds,
        provenance={
            "what": "benchmark reference only: classic 4-skip U-Net with RANDOM weights (timing does not depend "
            "on weight values; its outlines mean nothing)",
            "builder": "train.models.build_unet",
            "builder_options": builder,
            "seed": CLASSIC_SEED,
            "made_by": REFERENCE_COMMAND,
        },
    )
    path = root / f"classic-unet-s{CLASSIC_SKIPS}-f{filters}-{pp.width}x{pp.height}-{key}.tflite"
    return ClassicPlan(path=path, filters=filters, builder=builder, spec=spec)


def reference_command(reference_path: Path, base_filters: int | None, root: Path | None) -> str:
    """The command line that builds the classic U-Net for ``reference_path`` into ``root``."""
    parts = [REFERENCE_COMMAND]
    if reference_path.resolve() != default_model_path():
        parts.append(f"--model {reference_path}")
    if base_filters:
        parts.append(f"--filters {base_filters}")
    if root is not None and root != cache_dir():
        parts.append(f"--out {root}")
    return " ".join(parts)


def find_classic_unet(
    reference_path: Path, reference: ModelSpec, root: Path | None = None, base_filters: int | None = None
) -> tuple[Path | None, str | None]:
    """The cached classic U-Net for ``reference``: ``(path, None)``, or ``(None, why it cannot be had)``.

    Never builds anything; ``why`` names the command that does (`REFERENCE_COMMAND`).
    """
    try:
        plan = classic_unet_plan(reference, base_filters, root)
    except ValueError as e:
        return None, str(e)
    cmd = reference_command(reference_path, base_filters, root)
    where = plan.path.parent
    if not plan.path.is_file():
        return None, (f"{plan.path.name} is not in {where}: build it on a workstation with `{cmd}` (TensorFlow; "
                      f"on a box without it, copy the .tflite and its .yaml built elsewhere into {where})")
    try:
        load_spec(plan.path)
    except ModelError as e:
        return None, f"{plan.path} is unusable ({e}): build it again with `{cmd} --force`"
    return plan.path, None


# -- resolving --model --------------------------------------------------------------------------------------


def resolve_models(
    names: list[str] | None,
    configured: str | None = None,
    cache_root: Path | None = None,
    classic_filters: int | None = None,
) -> tuple[list[BenchModel], list[str]]:
    """Turn ``--model`` values (paths or `MODEL_ALIASES`) into loaded specs; returns ``(models, notes)``.

    names: None or empty = the defaults: the configured model (``configured``, i.e. ``model.path``) or the
        shipped one, its float32 twin, the classic U-Net.
    Raises `ModelError` for a path that does not exist or whose spec is missing/invalid, and for an explicit
    ``shipped-float32`` that is not there; `ConfigError` for an explicit ``classic-unet`` that has not been
    built (the message names the command that builds it). Defaults that cannot be had are skipped with a
    note. The same file twice is benchmarked once. ``classic_filters``: base filters of the classic U-Net
    (None: those of the first model, see `classic_unet_plan`).
    """
    notes: list[str] = []
    explicit = bool(names)
    main_path = Path(configured).expanduser() if configured else default_model_path()
    wanted = list(names) if names else [str(main_path), "<twin>", "classic-unet"]
    models: list[BenchModel] = []
    for name in wanted:
        if name in ("shipped", str(main_path)):
            path = default_model_path() if name == "shipped" else main_path
            role = "shipped" if path == default_model_path() else "file"
            models.append(_load_model(path, path.name, role))
        elif name in ("shipped-float32", "<twin>"):
            ref = default_model_path() if name == "shipped-float32" else main_path
            twin = float32_twin_path(ref)
            if twin.is_file():
                models.append(_load_model(twin, twin.name, "float32-twin"))
            elif explicit:
                raise ModelError(f"model file {twin} not found (the float32 twin of {ref.name})")
            else:
                notes.append(f"float32 twin skipped: {twin} not found (ship it beside {ref.name} to compare)")
        elif name == "classic-unet":
            ref_path = models[0].path if models else main_path
            reference = models[0].spec if models else load_spec(main_path)
            path, why = find_classic_unet(ref_path, reference, cache_root, classic_filters)
            if path is None:
                if explicit:
                    raise ConfigError("<command line>", [f"--model classic-unet: {why}"])
                notes.append(f"classic-unet skipped: {why}")
            else:
                filters = builder_options(load_spec(path)).get("base_filters", "?")
                models.append(_load_model(path, f"classic-unet-f{filters}", "classic-unet"))
                notes.append(f"classic-unet: {path.name}, float32, RANDOM weights: timing only (timing does not "
                             "depend on weight values)")
        else:
            p = Path(name).expanduser()
            models.append(_load_model(p, p.name, "shipped" if p.resolve() == default_model_path() else "file"))
    seen: set[Path] = set()
    unique = []
    for m in models:
        if m.path.resolve() not in seen:
            seen.add(m.path.resolve())
            unique.append(m)
    for m in unique:
        if m.spec.untrained and m.role != "classic-unet":
            notes.append(f"{m.label} is UNTRAINED (random weights): its speed is representative, its outlines not")
    if not unique:
        raise ModelError("no model to benchmark")
    return unique, notes
