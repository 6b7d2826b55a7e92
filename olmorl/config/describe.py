"""The option table of a config class (dotted key, default, docstring) for `--help` output."""

import typing
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from olmorl.config.base import nested_config_type


@dataclass(frozen=True)
class ConfigOption:
    key: str
    """Dotted key as written in overrides."""
    default: str
    """The default rendered as YAML would read it, or `required`."""
    doc: str
    """The field's docstring."""


def config_options(cls: type[BaseModel], prefix: str = "") -> list[ConfigOption]:
    """Every leaf option of `cls`, depth first, sections expanded."""
    options: list[ConfigOption] = []
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        nested = nested_config_type(field.annotation)
        if isinstance(nested, tuple):  # tagged union: the tag, then each variant's own options
            options.append(
                ConfigOption(
                    key,
                    _render(field.get_default(call_default_factory=True)),
                    field.description or "",
                )
            )
            for variant in nested:
                tag = variant.model_fields["name"].default
                options += [
                    o
                    for o in config_options(variant, f"{key}[{tag}].")
                    if not o.key.endswith("].name")
                ]
        elif nested is not None:
            options += config_options(nested, f"{key}.")
        else:
            options.append(
                ConfigOption(
                    key,
                    _render(field.get_default(call_default_factory=True)),
                    field.description or "",
                )
            )
    return options


def _render(default: typing.Any) -> str:
    if default is PydanticUndefined:
        return "required"
    if isinstance(default, BaseModel) and "name" in type(default).model_fields:
        return str(default.name)
    if default is None:
        return "null"
    return str(default).lower() if isinstance(default, bool) else str(default)
