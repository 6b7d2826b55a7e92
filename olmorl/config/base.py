"""The base every olmorl config class derives from: unknown keys refused, values frozen.

Field docstrings become the `--help` text and the `olmorl ... --help` option table, so every field
carries one.
"""

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )


def nested_config_type(annotation: Any) -> Any:
    """A model class, a tuple of model classes (a union of configs), or None."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = tuple(a for a in typing.get_args(annotation) if is_config_class(a))
        if len(models) == 1:
            return models[0]
        return models or None
    return annotation if is_config_class(annotation) else None


def is_config_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)
