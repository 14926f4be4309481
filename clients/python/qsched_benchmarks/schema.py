"""A small JSON Schema (2020-12 subset) validator for benchmark configs: type, const, enum, minimum,
maximum, exclusiveMinimum/Maximum, minLength/maxLength, pattern, items, minItems/maxItems, required,
properties, additionalProperties (false everywhere: unlike upstream, unknown keys are rejected),
default filling. Errors name the offending key."""

from __future__ import annotations

import copy
import re
from typing import Any

from qsched_benchmarks.errors import invalid_config

_TYPES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _where(path: str) -> str:
    return f"key {path!r}" if path else "the config"


def _check(value: Any, schema: dict, path: str, title: str) -> None:
    expected = schema.get("type")
    if expected:
        kinds = expected if isinstance(expected, list) else [expected]
        if not any(_TYPES[k](value) for k in kinds):
            raise invalid_config(
                f"{title}: {_where(path)} must be {' or '.join(kinds)}, got {value!r}", key=path
            )
    if "const" in schema and value != schema["const"]:
        raise invalid_config(f"{title}: {_where(path)} must be {schema['const']!r}, got {value!r}", key=path)
    if "enum" in schema and value not in schema["enum"]:
        raise invalid_config(
            f"{title}: {_where(path)} must be one of {schema['enum']!r}, got {value!r}", key=path
        )
    if _TYPES["number"](value):
        for word, test in [
            ("minimum", lambda v, b: v >= b),
            ("maximum", lambda v, b: v <= b),
            ("exclusiveMinimum", lambda v, b: v > b),
            ("exclusiveMaximum", lambda v, b: v < b),
        ]:
            if word in schema and not test(value, schema[word]):
                raise invalid_config(
                    f"{title}: {_where(path)} = {value!r} violates {word} {schema[word]!r}", key=path
                )
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise invalid_config(f"{title}: {_where(path)} is shorter than {schema['minLength']}", key=path)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise invalid_config(f"{title}: {_where(path)} is longer than {schema['maxLength']}", key=path)
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise invalid_config(f"{title}: {_where(path)} does not match {schema['pattern']!r}", key=path)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise invalid_config(
                f"{title}: {_where(path)} needs at least {schema['minItems']} items", key=path
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise invalid_config(
                f"{title}: {_where(path)} allows at most {schema['maxItems']} items", key=path
            )
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", title)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                raise invalid_config(f"{title}: required key {key!r} is missing", key=key)
        if schema.get("additionalProperties", True) is False:
            unknown = sorted(set(value) - set(properties))
            if unknown:
                raise invalid_config(
                    f"{title}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(properties))})",
                    key=unknown[0],
                )
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], f"{path}.{key}" if path else key, title)


def validate(config: Any, schema: dict) -> dict:
    """Validate and return a copy with defaults filled in (top-level properties)."""
    title = schema.get("title", "config")
    _check(config, schema, "", title)
    filled = copy.deepcopy(config)
    for key, prop in schema.get("properties", {}).items():
        if key not in filled and "default" in prop:
            filled[key] = copy.deepcopy(prop["default"])
    return filled


def obj(title: str, name: str, properties: dict, required: tuple[str, ...] = ()) -> dict:
    """A benchmark config schema: benchmark_name const plus the given properties, nothing else."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {"benchmark_name": {"type": "string", "const": name}, **properties},
        "required": ["benchmark_name", *required],
        "additionalProperties": False,
    }


def integer(default: Any = None, minimum: int | None = None, maximum: int | None = None, **more) -> dict:
    out: dict[str, Any] = {"type": "integer", **more}
    if default is not None:
        out["default"] = default
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def number(default: Any = None, minimum: float | None = None, maximum: float | None = None) -> dict:
    out: dict[str, Any] = {"type": "number"}
    if default is not None:
        out["default"] = default
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


# Per benchmark bounds: no benchmark needs more; the gateway's provider limits may be lower.
MAX_SHOTS = 10_000_000
MAX_QUBITS = 1_000
SHOTS = integer(1000, 1, MAX_SHOTS)
