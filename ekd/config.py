"""Reading YAML configs and validating sections with pydantic, with one-line errors."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml

from ekd.errors import ConfigError

__all__ = ["config_error", "dump_yaml", "load_yaml", "validate"]

Model = TypeVar("Model", bound=pydantic.BaseModel)


def load_yaml(path: str | os.PathLike | None) -> dict:
    """The mapping in a YAML file ({} for None); ConfigError for a missing or malformed file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return content


def validate(model: type[Model], values: dict, where: str) -> Model:
    """``model(**values)``; the first validation problem as a ConfigError naming ``where.key``."""
    try:
        return model(**values)
    except pydantic.ValidationError as error:
        raise config_error(error, model, where) from None


def config_error(error: pydantic.ValidationError, model: type[Model], where: str) -> ConfigError:
    """The first problem of a validation ``error`` of ``model`` as a ConfigError naming ``where.key``."""
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = _field_names(model, first["loc"][:-1])
        message = "unknown option" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    return ConfigError(f"{where}.{key}: {message}" if key else f"{where}: {message}")


def _field_names(model: type[pydantic.BaseModel], path: tuple) -> list[str]:
    """The field names of the (nested) model at ``path`` of ``model``; [] where it is no model."""
    for part in path:
        field = model.model_fields.get(str(part))
        nested = [t for t in (field.annotation, *typing.get_args(field.annotation)) if isinstance(t, type) and issubclass(t, pydantic.BaseModel)] if field else []
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def dump_yaml(values: dict) -> str:
    """YAML text of a config mapping, keys in their given order."""
    return yaml.safe_dump(values, sort_keys=False)
