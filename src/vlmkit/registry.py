"""models.toml: the registry of encoders, LLMs, end-to-end VLMs, GPUs and recommended tiers.

Pure data: stdlib TOML plus frozen dataclasses, no torch and no network. Every malformed entry
is reported as one `RegistryError` naming the file, the entry and the field.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from vlmkit.errors import RegistryError, UnknownModelError

REGISTRY_ENV = "VLMKIT_REGISTRY"


@dataclass(frozen=True, kw_only=True)
class _Model:
    key: str
    repo: str
    family: str
    params: int
    gated: bool
    license: str
    revision: str | None = None
    aliases: tuple[str, ...] = ()
    safetensors: bool = True  # false: the repo ships only pickled weights, which vlmkit does not load

    kind: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ()

    @property
    def is_local(self) -> bool:
        """True when `repo` is a directory holding a saved model rather than a Hub id."""
        return self.repo.startswith(("/", ".", "~")) or os.path.isdir(self.repo)


@dataclass(frozen=True, kw_only=True)
class Encoder(_Model):
    image_size: int
    patch_size: int
    hidden_size: int
    layers: int
    tokens_per_frame: int
    heads: int | None = None
    intermediate_size: int | None = None
    extra_tokens: int = 0  # CLS and register tokens the encoder emits besides its patch tokens

    kind: ClassVar[str] = "encoder"
    families: ClassVar[tuple[str, ...]] = ("siglip", "clip", "dinov3-vit", "dinov3-convnext")


@dataclass(frozen=True, kw_only=True)
class LLM(_Model):
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    active_params: int | None = None  # MoE: parameters used per token (all are held in memory)

    kind: ClassVar[str] = "llm"
    families: ClassVar[tuple[str, ...]] = ("qwen3", "qwen3-moe")


@dataclass(frozen=True, kw_only=True)
class VLM(LLM):
    tokens_per_frame: int
    default_frames: int = 8
    vision_params: int
    vision_hidden_size: int
    vision_layers: int
    vision_image_size: int
    vision_patch_size: int

    kind: ClassVar[str] = "vlm"
    families: ClassVar[tuple[str, ...]] = (
        "llava-next-video", "llava-next", "qwen3-vl", "qwen3-vl-moe", "qwen3-omni",
    )


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_mib: int
    compute_capability: str
    bf16: bool
    aliases: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 2**20

    @property
    def capability(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass(frozen=True)
class Tier:
    gpu: str
    encoder: str
    llm: str
    vlm: str | None = None
    source: str = ""


Model = Union[Encoder, LLM, VLM]
_SECTIONS: dict[str, type] = {"encoders": Encoder, "llms": LLM, "vlms": VLM}


@dataclass(frozen=True)
class Registry:
    path: Path
    encoders: dict[str, Encoder]
    llms: dict[str, LLM]
    vlms: dict[str, VLM]
    gpus: dict[str, GpuSpec]
    tiers: tuple[Tier, ...] = field(default=())

    @cached_property
    def _by_name(self) -> dict[str, Model]:
        names: dict[str, Model] = {}
        for entry in self.all_models():
            names[entry.key.lower()] = entry
            for alias in entry.aliases:
                names[alias.lower()] = entry
        return names

    def all_models(self) -> list[Model]:
        return [*self.encoders.values(), *self.llms.values(), *self.vlms.values()]

    def model(self, name: str, kind: str | None = None) -> Model:
        """The entry a user means by `name`: a key, an alias, or a repo id, of `kind` if given."""
        entry = self._by_name.get(name.lower()) or next(
            (m for m in self.all_models() if m.repo.lower() == name.lower()), None
        )
        if entry is None or (kind and entry.kind != kind):
            choices = [m.key for m in self.all_models() if not kind or m.kind == kind]
            close = difflib.get_close_matches(name.lower(), choices, n=3, cutoff=0.5)
            what = f"{kind} " if kind else "model "
            hint = f"Did you mean {', '.join(close)}? " if close else ""
            raise UnknownModelError(
                f"Unknown {what}'{name}'" + (f" (it is a {entry.kind})" if entry else ""),
                hint + "See `vlmkit models` for the keys this registry knows.",
            )
        return entry

    def encoder(self, name: str) -> Encoder:
        return self.model(name, "encoder")  # type: ignore[return-value]

    def llm(self, name: str) -> LLM:
        return self.model(name, "llm")  # type: ignore[return-value]

    def vlm(self, name: str) -> VLM:
        return self.model(name, "vlm")  # type: ignore[return-value]

    def gpu(self, name: str) -> GpuSpec:
        wanted = name.lower().replace(" ", "-")
        for spec in self.gpus.values():
            if wanted in (n.lower() for n in (spec.name, *spec.aliases)):
                return spec
        known = f"Known GPUs: {', '.join(self.gpus)}; or" if self.gpus else "This registry lists no GPUs:"
        raise UnknownModelError(f"Unknown GPU '{name}'", f"{known} plan for any card with --vram GB.")

    def tier(self, gpu_name: str) -> Tier | None:
        return next((t for t in self.tiers if t.gpu == gpu_name), None)


# ---------------------------------------------------------------- loading

def default_registry_path() -> Path:
    """The registry shipped in the package, or the checkout's top-level models.toml."""
    packaged = Path(__file__).with_name("models.toml")
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "models.toml"


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Read and validate a registry: `path`, else $VLMKIT_REGISTRY, else the shipped one."""
    path = Path(path or os.environ.get(REGISTRY_ENV) or default_registry_path()).expanduser()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"Registry file not found: {path}",
                            f"Pass an existing file with --registry or {REGISTRY_ENV}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"Cannot read registry {path}: {exc}",
                            "Pass a models.toml text file with --registry or VLMKIT_REGISTRY.") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: invalid TOML: {exc}", "Fix the syntax at that line.") from None
    return _parse(raw, path)


def _parse(raw: dict[str, Any], path: Path) -> Registry:
    unknown = set(raw) - {*_SECTIONS, "gpus", "tiers"}
    if unknown:
        raise RegistryError(f"{path}: unknown top-level table(s) {sorted(unknown)}",
                            "Allowed: encoders, llms, vlms, gpus, tiers.")
    sections = {
        name: {key: _build(cls, _with_local_repo(_table(spec, path, f"[{name}.{key}]", key), path)
                           | {"key": key}, path, f"[{name}.{key}]")
               for key, spec in _table(raw.get(name, {}), path, f"[{name}]", name).items()}
        for name, cls in _SECTIONS.items()
    }
    gpus = {name: _build(GpuSpec, _table(spec, path, f"[gpus.{name}]", name) | {"name": name},
                         path, f"[gpus.{name}]")
            for name, spec in _table(raw.get("gpus", {}), path, "[gpus]", "gpus").items()}
    tiers_raw = raw.get("tiers", [])
    if not isinstance(tiers_raw, list):
        raise RegistryError(f"{path}: 'tiers' must be an array of tables ([[tiers]])")
    tiers = tuple(_build(Tier, _table(t, path, f"[[tiers]] #{i + 1}", "tier"), path, f"[[tiers]] #{i + 1}")
                  for i, t in enumerate(tiers_raw))
    registry = Registry(path, sections["encoders"], sections["llms"], sections["vlms"], gpus, tiers)
    if not registry.all_models():
        raise RegistryError(f"{path}: the registry defines no models",
                            "Add [encoders.KEY], [llms.KEY] or [vlms.KEY] tables (see README.md).")
    _check_names(registry)
    _check_gpus(registry)
    _check_tiers(registry)
    return registry


def _table(value: Any, path: Path, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: {where} must be a table, got {type(value).__name__}",
                            f"Write it as a [section] with key = value lines ({name}).")
    return value


def _build(cls: type, values: dict[str, Any], path: Path, where: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for name in values:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"Did you mean '{close[0]}'?" if close else "Remove it."
            if isinstance(values[name], dict):  # [llms.qwen3-0.6b] parses as llms -> qwen3-0 -> 6b
                hint = 'A key containing "." must be quoted, as in [llms."qwen3-0.6b"].'
            raise RegistryError(f"{path}: {where}: unknown field '{name}'", hint)
    kwargs: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in values:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise RegistryError(f"{path}: {where}: missing field '{name}'",
                                    f"Add `{name} = ...` to {where}.")
            continue
        kwargs[name] = _typed(values[name], hints[name], path, where, name)
    families = getattr(cls, "families", ())
    if families and kwargs["family"] not in families:
        raise RegistryError(f"{path}: {where}: field 'family' is '{kwargs['family']}'",
                            f"Use one of: {', '.join(families)}.")
    return cls(**kwargs)


def _typed(value: Any, hint: Any, path: Path, where: str, name: str) -> Any:
    is_union = get_origin(hint) in (Union, types.UnionType)
    options = [a for a in get_args(hint) if a is not type(None)] if is_union else [hint]
    for option in options:
        if get_origin(option) is tuple:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
        elif option is int and isinstance(value, int) and not isinstance(value, bool):
            if value >= 0:
                return value
        elif option in (str, bool) and isinstance(value, option):
            return value
    expected = {int: "a non-negative integer", str: "a string", bool: "true or false"}.get(
        options[0], "a list of strings")
    raise RegistryError(f"{path}: {where}: field '{name}' must be {expected}, got {value!r}",
                        f"Fix `{name}` in {where}.")


def _with_local_repo(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A relative local path is relative to the registry file, not to the working directory."""
    repo = values.get("repo")
    if isinstance(repo, str) and repo.startswith((".", "~")):
        return values | {"repo": str((path.parent / Path(repo).expanduser()).resolve())}
    return values


def _check_names(registry: Registry) -> None:
    owners: dict[str, str] = {}
    for entry in registry.all_models():
        where = f"[{entry.kind}s.{entry.key}]"
        for name in (entry.key, *entry.aliases):
            if name.lower() in owners:
                raise RegistryError(
                    f"{registry.path}: {where}: name '{name}' is already used by {owners[name.lower()]}",
                    "Keys and aliases must be unique across encoders, llms and vlms.")
            owners[name.lower()] = where


def _check_gpus(registry: Registry) -> None:
    owners: dict[str, str] = {}
    for spec in registry.gpus.values():
        where = f"{registry.path}: [gpus.{spec.name}]"
        if not re.fullmatch(r"\d+\.\d+", spec.compute_capability):
            raise RegistryError(f"{where}: field 'compute_capability' must look like \"8.9\", got "
                                f"{spec.compute_capability!r}", "Write major.minor, as NVIDIA's tables do.")
        if spec.memory_mib <= 0:
            raise RegistryError(f"{where}: field 'memory_mib' must be positive", "Give the total memory in MiB.")
        for name in (spec.name, *spec.aliases):
            if name.lower() in owners:
                raise RegistryError(f"{where}: name '{name}' is already used by {owners[name.lower()]}",
                                    "GPU names and aliases must be unique.")
            owners[name.lower()] = f"[gpus.{spec.name}]"


def _check_tiers(registry: Registry) -> None:
    for i, tier in enumerate(registry.tiers):
        where = f"{registry.path}: [[tiers]] #{i + 1} (gpu = \"{tier.gpu}\")"
        checks = [("gpu", tier.gpu, registry.gpus), ("encoder", tier.encoder, registry.encoders),
                  ("llm", tier.llm, registry.llms)]
        if tier.vlm is not None:
            checks.append(("vlm", tier.vlm, registry.vlms))
        for field_name, value, table in checks:
            if value not in table:
                raise RegistryError(f"{where}: field '{field_name}' names unknown key '{value}'",
                                    f"Use a key defined in the registry: {', '.join(table)}.")
