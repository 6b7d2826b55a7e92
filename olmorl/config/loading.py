"""Loading configs: YAML recipe + dotted command-line overrides → a validated, frozen config.

Every problem becomes one line naming where it came from (file and line, or the override) and the
dotted key, with the closest valid key for typos. Imports neither torch nor vLLM, so a bad recipe
fails in about a second.
"""

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from olmorl.config.base import is_config_class, nested_config_type
from olmorl.io import atomic_write_text

ConfigT = TypeVar("ConfigT", bound=BaseModel)

RESOLVED_CONFIG_NAME = "config.yaml"


class ConfigError(ValueError):
    """A config that cannot be used; the message has one line per problem."""


def load_config(cls: type[ConfigT], path: str | Path, overrides: Sequence[str] = ()) -> ConfigT:
    """Reads `path`, applies `key.sub=value` overrides, and validates the result as `cls`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
        key_lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, not {type(data).__name__}"
        )
    parsed = parse_overrides(overrides)
    written = {item.partition("=")[0]: item for item in overrides}
    for key, value in parsed.items():
        _set_dotted(data, key, value, source=f"override '{written[key]}'")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = [
            _describe_error(cls, err, path, key_lines, written)
            for err in e.errors(include_url=False)
        ]
        raise ConfigError("\n".join(lines)) from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["algo.clip_high=0.3"]` → `{"algo.clip_high": 0.3}`; values are parsed as YAML scalars."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"override '{item}': expected KEY.SUBKEY=VALUE, e.g. algo.clip_high=0.3"
            )
        try:
            parsed[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            parsed[key] = raw
    return parsed


def write_resolved_config(config: BaseModel, run_dir: str | Path) -> Path:
    """Writes the fully resolved config (defaults included) into the run directory, atomically."""
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return atomic_write_text(Path(run_dir) / RESOLVED_CONFIG_NAME, text)


def _set_dotted(data: dict, key: str, value: Any, source: str) -> None:
    *parents, leaf = key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"{source}: '{where}' is a value, not a section")
        node = child
    node[leaf] = value


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Maps each dotted key path of a YAML document to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path))
    return lines


def _describe_error(cls, err: dict, path: Path, key_lines: dict, overrides: dict[str, str]) -> str:
    keys, model_at_parent = _walk(cls, err["loc"])
    dotted = ".".join(keys)
    source = _source_of(keys, path, key_lines, overrides)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = f"unknown key '{keys[-1]}'"
        if model_at_parent is not None:
            valid = list(model_at_parent.model_fields)
            close = difflib.get_close_matches(keys[-1], valid, n=1, cutoff=0.6)
            message += (
                f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
            )
    elif err["type"] not in ("missing", "value_error") and "input" in err:
        message += f" (got {err['input']!r})"
    return f"{source}: {dotted or '<top level>'}: {message}"


def _source_of(keys: list[str], path: Path, key_lines: dict, overrides: dict[str, str]) -> str:
    for key, item in overrides.items():
        parts = key.split(".")
        # The error may sit under the overridden key, or above it (a model-level check).
        if keys and (keys[: len(parts)] == parts or parts[: len(keys)] == keys):
            return f"override '{item}'"
    for n in range(len(keys), 0, -1):
        line = key_lines.get(tuple(keys[:n]))
        if line is not None:
            return f"{path}:{line}"
    return str(path)


def _walk(cls: type[BaseModel], loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """Turns a pydantic error location into the user's dotted key, dropping union tags.

    Also returns the config class holding the last key, for typo suggestions.
    """
    keys: list[str] = []
    current: Any = cls
    parent: type[BaseModel] | None = None
    parts = list(loc)
    while parts:
        part = str(parts.pop(0))
        keys.append(part)
        parent = current if is_config_class(current) else None
        if parent is None or part not in parent.model_fields:
            current = None
            continue
        current = nested_config_type(parent.model_fields[part].annotation)
        if isinstance(current, tuple):  # a tagged union: pydantic puts the tag in the location
            tag = str(parts.pop(0)) if parts else None
            current = next((m for m in current if m.model_fields["name"].default == tag), None)
    return keys, parent
