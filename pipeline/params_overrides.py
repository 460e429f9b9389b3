"""The params layer's error type and the `a.b=v` override mechanics (re-exported by `pipeline.params`)."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import ValidationError


class ParamsError(ValueError):
    """A params file or override that does not fit the schema; the message names file and key."""


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `top` wins, nested dicts merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`a.b.c=value` → {'a': {'b': {'c': value}}} with the value parsed as YAML."""
    if "=" not in text:
        raise ParamsError(f"override {text!r}: expected KEY=VALUE, e.g. tgd.groups=5")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def format_errors(source: str, error: ValidationError, key_prefix: str = "") -> str:
    """A validation error as one line per dotted key, under the file (or profile) it came from."""
    lines = [f"{source}: invalid params"]
    for item in error.errors():
        key = key_prefix + ".".join(str(p) for p in item["loc"]) or "<root>"
        got = item.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {item['msg']}{got_text}")
    return "\n".join(lines)


def with_sections(params, sections: dict[str, Any], source: str, key_prefix: str):
    """A pydantic `params` with `sections` merged over its values and validated again; an error
    names `key_prefix` + the key (e.g. `teacher.model.dec_layers`)."""
    if not sections:
        return params
    merged = deep_merge(params.model_dump(mode="json"), sections)
    try:
        return type(params).model_validate(merged)
    except ValidationError as error:
        raise ParamsError(format_errors(source, error, key_prefix)) from None
