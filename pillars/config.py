"""Run configuration: typed flat keys, `--set key=value` overrides, and config.toml files."""
from __future__ import annotations

import contextlib
import difflib
import math
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Iterator, NamedTuple

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the valid choices."""


TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def note(text: str) -> None:
    """A note on stderr, where it stays apart from what a command writes on stdout (samples, translations)."""
    print(text, file=sys.stderr, flush=True)


def unknown_name_message(what: str, name: str, valid) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Valid {what}s: {', '.join(valid)}"


def finite(value) -> bool:
    """Not nan and not infinite (any int is finite, even one too large for a float)."""
    return not isinstance(value, float) or math.isfinite(value)


class Range(NamedTuple):
    """The valid values of a numeric key: from `low` to `high`, `ends` saying which ends are valid values
    themselves ("[]" both, "[)" `low` only, "(]" `high` only, "()" neither); `hint` says what the key is or
    what to set it to. Every value must also be finite (no nan, no inf)."""
    low: float = 0
    high: float = math.inf
    ends: str = "[]"
    hint: str = ""

    def holds(self, value) -> bool:
        if not finite(value):
            return False
        above = value >= self.low if self.ends[0] == "[" else value > self.low
        below = value <= self.high if self.ends[1] == "]" else value < self.high
        return above and below

    def phrase(self) -> str:
        """The range in words: "at least 1", "between 0 and 1 (exclusive)", "at least 0 and below 1"..."""
        low, high = (str(x) if isinstance(x, int) else f"{x:g}" for x in (self.low, self.high))
        if self.low == -math.inf and self.high == math.inf:
            return ""
        if self.high == math.inf:
            return f"at least {low}" if self.ends[0] == "[" else f"above {low}"
        return {"[]": f"between {low} and {high}", "()": f"between {low} and {high} (exclusive)",
                "[)": f"at least {low} and below {high}", "(]": f"above {low} and at most {high}"}[self.ends]


def check_range(key: str, value, valid: Range, fix: str = "") -> None:
    """A ConfigError naming the key, the value, the valid range and the fix unless `value` is in `valid`."""
    if valid.holds(value):
        return
    what = ", ".join(filter(None, ("" if finite(value) else "a finite number", valid.phrase())))
    hint = "; ".join(filter(None, (valid.hint, fix)))
    raise ConfigError(f"{key} must be {what}, not {value}" + (f": {hint}" if hint else ""))


def check_multiple(cfg: dict, key: str, of: str, why: str) -> None:
    """`cfg[key]` must be a multiple of `cfg[of]` (a Transformer's width and heads): else a ConfigError that
    suggests the nearest multiple and the divisors of the value."""
    value, step = cfg[key], cfg[of]
    if step < 1 or value % step == 0:
        return
    nearest = max(step, round(value / step) * step)
    divisors = [d for d in range(1, min(value, 64) + 1) if value % d == 0]
    raise ConfigError(f"{key} {value} must be a multiple of {of} {step} ({why}): --set {key}={nearest}, or "
                      f"{of} among the divisors of {value} ({', '.join(map(str, divisors))})")


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
            raise ConfigError(f"{key} takes {TYPE_NAMES.get(kind, kind.__name__)}, not {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key} takes {TYPE_NAMES.get(kind, kind.__name__)}, not {value!r}")
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
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, content: bytes) -> None:
    """Write a file through a temporary file and a rename (`atomic_path`), as write_text_atomic does."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (`.NAME.tmpPID`) for a writer that wants a file name (copyfile,
    safetensors, ONNX): renamed onto `path` when the block ends, removed when it fails, so a reader sees the
    previous file or the whole new one, and a failed write leaves no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_toml(path: Path, data: dict) -> None:
    write_text_atomic(path, tomli_w.dumps(data))
