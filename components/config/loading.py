"""Loading a configuration: built-in profiles, YAML files, ``extends:``, ``key=value`` overrides.

A YAML file may start from another one with ``extends: <profile>`` (a built-in profile such as
``beauty``) or ``extends: <file.yaml>`` (relative to the extending file): the parent is loaded first
and the file's own values are laid over it section by section, except ``data.source``, which is
replaced whole (a source of another kind shares no fields). So a profile for one's own data needs
only its ``data`` section and whatever it means to change.

Relative paths (``path``, ``output_dir``) resolve against the folder of the file that names them; in
the built-in profiles and in ``--set`` overrides, against the current directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from shopdistill.components.config.schema import CandidatesConfig, ConfigError, PipelineConfig
from shopdistill.components.messages import clip

_KINDS = ("synthetic", "event_log", "amazon")
_PATH_KEYS = ("path", "output_dir")
PROFILES_DIR = Path(str(files("shopdistill.profiles")))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown profile {name!r}: expected {path} (available: {', '.join(available_profiles())})"
        )
    return path


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        # drop the discriminated-union tag pydantic puts in the location (data.source.<kind>.x)
        loc = [p for i, p in enumerate(e["loc"]) if not (i and e["loc"][i - 1] == "source" and p in _KINDS)]
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = e["msg"]
        lines.append(f"  {key}: {msg}")
    return f"invalid configuration in {origin}:\n" + "\n".join(lines)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):  # ValueError: a date-like value that is no date (2025-13-40)
        return text


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid UTF-8: {exc}") from None
    try:
        tree = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date-like value that is no date
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    return tree


def _absolutise(tree: dict[str, Any], base: Path) -> None:
    """Make the relative paths of one file's tree absolute, against ``base``."""
    for key, value in tree.items():
        if isinstance(value, dict):
            _absolutise(value, base)
        elif key in _PATH_KEYS and isinstance(value, str) and value and not Path(value).is_absolute():
            tree[key] = str(base / Path(value).expanduser())


def _merge(parent: dict[str, Any], child: dict[str, Any], at: str = "") -> dict[str, Any]:
    """``child`` laid over ``parent`` section by section; ``data.source`` is replaced whole."""
    out = dict(parent)
    for key, value in child.items():
        here = f"{at}.{key}" if at else key
        if isinstance(value, dict) and isinstance(out.get(key), dict) and here != "data.source":
            out[key] = _merge(out[key], value, here)
        else:
            out[key] = value
    return out


def _load_tree(path: Path, base: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One file's tree with its ``extends:`` chain resolved (cycles are an error)."""
    if path in chain:
        raise ConfigError("extends: cycle " + " -> ".join(str(p) for p in (*chain, path)))
    tree = _read_yaml(path)
    _absolutise(tree, base)
    parent = tree.pop("extends", None)
    if parent is None:
        return tree
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: extends must name a profile or a YAML file, not {parent!r}")
    if parent.endswith((".yaml", ".yml")):
        parent_path = (path.parent / parent).resolve()
        parent_tree = _load_tree(parent_path, parent_path.parent, (*chain, path))
    else:
        parent_tree = _load_tree(profile_path(parent), Path.cwd(), (*chain, path))
    return _merge(parent_tree, tree)


def load_config(
    path: str | Path | None = None,
    *,
    profile: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> PipelineConfig:
    """Load a profile or a YAML file, apply ``key=value`` overrides, validate strictly.

    Raises:
        ConfigError: naming every offending key and the file (or override) it came from.
    """
    if path is not None and profile is not None:
        raise ConfigError("give either a profile or a configuration file, not both")
    tree: dict[str, Any] = {}
    origin = "<defaults>"
    if profile is not None:
        path = profile_path(profile)
        tree, origin = _load_tree(path, Path.cwd()), str(path)
    elif path is not None:
        path = Path(path).resolve()
        tree, origin = _load_tree(path, path.parent), str(path)
    overrides = list(overrides)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {clip(item)} must look like key=value, e.g. student.model.d_model=16"
            )
        value = _parse_value(value)
        if key.strip().split(".")[-1] in _PATH_KEYS and isinstance(value, str) and value:
            value = str(Path.cwd() / Path(value).expanduser())  # an absolute value stays as it is
        _set_dotted(tree, key.strip(), value)
    if overrides:
        origin += " with overrides " + " ".join(overrides)
    try:
        return PipelineConfig.model_validate(tree, context={"base_dir": Path.cwd()})
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin)) from None


# how the fanned-out stages run: where (Ray or here) and in how many soft-label shards
EXECUTION_KEYS = (
    "executor",
    "ray_address",
    "ray_cpus_per_task",
    "ray_gpus_per_task",
    "ray_worker_restarts",
    "soft_label_shards",
)


def config_hash(config: BaseModel) -> str:
    """Stable sha256 of a config section (used in cache keys and registry tags).

    Left out: how fanned-out stages run (:data:`EXECUTION_KEYS`: the same rows and models wherever
    they run) and the teacher's DDP workers (the same model within noise), and ``candidates`` while it is empty (the one-student pipeline hashes as it always
    has)."""
    from shopdistill.components.artifacts import sha256_json

    dumped = config.model_dump(mode="json")
    for key in EXECUTION_KEYS:
        dumped.get("runtime", {}).pop(key, None)
    dumped.get("teacher", {}).get("train", {}).pop("workers", None)
    if dumped.get("candidates") == CandidatesConfig().model_dump(mode="json"):
        dumped.pop("candidates")
    return sha256_json(dumped)
