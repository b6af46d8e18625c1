"""Run configuration: typed flat keys, `--set key=value` overrides, and config.toml files."""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the valid choices."""


def unknown_name_message(what: str, name: str, valid) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Valid {what}s: {', '.join(valid)}"


def defaults_of(cls) -> dict:
    """The default values of a dataclass's fields, as a flat dict."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def coerce(key: str, value, default):
    """`value` (a string from the command line, or a TOML value) converted to the type of `default`."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key} takes true or false, not {value!r}")
        try:
            return kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
        except ValueError:
            raise ConfigError(f"{key} takes a {kind.__name__}, not {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} takes a {kind.__name__}, not {value!r}")
    return value


def apply_overrides(config: dict, overrides: dict, source: str) -> dict:
    """A copy of `config` with `overrides` applied; an unknown key is an error listing the valid ones."""
    out = dict(config)
    for key, value in overrides.items():
        if key not in config:
            raise ConfigError(unknown_name_message("key", key, config) + f" (from {source})")
        out[key] = coerce(key, value, config[key])
    return out


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes key=value, not {item!r}")
        out[key.strip()] = value
    return out


def read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file (UTF-8) through a temporary file and a rename: a kill mid-write leaves the previous
    file or none, never a truncated one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_toml(path: Path, data: dict) -> None:
    write_text_atomic(path, tomli_w.dumps(data))
