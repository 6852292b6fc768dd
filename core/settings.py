"""Strict settings: frozen dataclasses read from flags, env and an optional file.

Each process describes its settings as frozen dataclasses whose fields carry an
:func:`option` marker. :func:`load` reads, in increasing precedence, the field
defaults, a TOML or JSON file given with ``--config``, environment variables and
command-line flags, and builds the dataclasses. Every problem (unknown key,
bad value, bad type) raises :class:`~core.errors.ConfigError` naming the setting
and the fix, before any I/O happens.

Durations accept ``250us``, ``500ms``, ``30s``, ``5m``, ``1h``, ``7d`` or a number of seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from core import names
from core.errors import ConfigError

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|sec|m|min|h|d)?\s*$")
_NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                "sec": 1_000_000_000, "m": 60_000_000_000, "min": 60_000_000_000,
                "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def parse_duration_ns(value: object, setting: str) -> int:
    """``'500ms'`` -> 500_000_000. A bare number is seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"setting '{setting}': {value!r} is not a duration; use e.g. 500ms, 30s")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"setting '{setting}': {value!r} must be a non-negative duration")
        return int(value * 1_000_000_000)
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"setting '{setting}': {value!r} is not a duration; use e.g. 500ms, 30s, 5m")
    number, unit = match.groups()
    return int(float(number) * _NS_PER_UNIT[unit or "s"])


def format_duration_ns(duration_ns: int) -> str:
    for unit, size in (("d", 86_400_000_000_000), ("h", 3_600_000_000_000), ("m", 60_000_000_000),
                       ("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if duration_ns >= size and duration_ns % size == 0:
            return f"{duration_ns // size}{unit}"
    return f"{duration_ns}ns"


def parse_symbols(value: object, setting: str) -> tuple[str, ...]:
    """``'aapl, MSFT'`` or ``['AAPL', 'MSFT']`` -> ``('AAPL', 'MSFT')``, de-duplicated in order."""
    items: Iterable[object] = value.split(",") if isinstance(value, str) else value  # type: ignore[assignment]
    if not isinstance(items, Iterable):
        raise ConfigError(f"setting '{setting}': expected a comma-separated list, got {value!r}")
    symbols = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            symbols.append(names.check_symbol(text))
        except names.NameRuleError:
            raise ConfigError(f"setting '{setting}': {names.shown(text)} is not a valid symbol; "
                              f"use {names.SYMBOL_RULE}") from None
    return tuple(dict.fromkeys(symbols))


def check_name_setting(value: str, setting: str) -> None:
    """ConfigError unless ``value`` follows the name rule of core.names (it becomes part of keys and logs)."""
    if not names.is_name(value):
        raise ConfigError(f"setting '{setting}': {names.shown(value)} is not allowed; use {names.NAME_RULE}")


def nearest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_names(value: object, setting: str) -> tuple[str, ...]:
    """``'fair_price, spread'`` -> ``('fair_price', 'spread')``; case is kept."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"setting '{setting}': expected a comma-separated list, got {value!r}")
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def option(default: Any = dataclasses.MISSING, *, help: str, key: str | None = None,
           env: Sequence[str] = (), duration: bool = False, secret: bool = False,
           symbols: bool = True) -> Any:
    """A dataclass field that is a setting.

    ``key`` is its name in files and flags (default: the field name); ``env``
    lists extra environment variables besides ``TF_<KEY>``; ``duration`` makes
    an ``int`` ``*_ns`` field accept ``'500ms'``; ``secret`` keeps it out of
    reprs and errors; a ``tuple[str, ...]`` field is a list of symbols
    (upper-cased, checked) unless ``symbols=False`` (plain names, case kept).
    """
    metadata = {"help": help, "key": key, "env": tuple(env), "duration": duration, "secret": secret,
                "symbols": symbols}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use an immutable default")
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    field: str
    key: str
    help: str
    env: tuple[str, ...]
    duration: bool
    secret: bool
    symbols: bool
    type: Any
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def option_specs(cls: type) -> list[OptionSpec]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        key = f.metadata["key"] or f.name
        env = ("TF_" + key.upper(), *f.metadata["env"])
        specs.append(OptionSpec(f.name, key, f.metadata["help"], env, f.metadata["duration"],
                                f.metadata["secret"], f.metadata["symbols"], hints[f.name],
                                f.default))
    return specs


def _coerce(spec: OptionSpec, value: Any) -> Any:
    if spec.duration:
        return parse_duration_ns(value, spec.key)
    kind, args = typing.get_origin(spec.type), typing.get_args(spec.type)
    if kind in (types.UnionType, typing.Union) and type(None) in args:
        if value is None or value == "":
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(dataclasses.replace(spec, type=inner), value)
    if kind is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"setting '{spec.key}': {_shown(spec, value)} is not one of {choices}")
        return value
    if kind is tuple:
        return parse_symbols(value, spec.key) if spec.symbols else parse_names(value, spec.key)
    coerce = _SCALARS.get(spec.type)
    if coerce is None:
        raise TypeError(f"unsupported setting type {spec.type!r}")
    return coerce(spec, value)


def _shown(spec: OptionSpec, value: Any) -> str:
    return "<redacted>" if spec.secret else repr(value)


def _to_bool(spec: OptionSpec, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"setting '{spec.key}': {_shown(spec, value)} is not a boolean; use true or false")


def _to_number(spec: OptionSpec, value: Any) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(f"setting '{spec.key}': {_shown(spec, value)} is not a {spec.type.__name__}")
    try:
        number: int | float = spec.type(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting '{spec.key}': {_shown(spec, value)} is not a {spec.type.__name__}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"setting '{spec.key}': {_shown(spec, value)} must be finite")
    return number


_SCALARS: dict[Any, Callable[[OptionSpec, Any], Any]] = {
    bool: _to_bool,
    int: _to_number,
    float: _to_number,
    str: lambda spec, value: str(value),
}


def read_config_file(path: str) -> dict[str, Any]:
    """A TOML (``.toml``) or JSON file of ``key = value`` settings."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as e:
        raise ConfigError(f"setting 'config': cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"setting 'config': {path} is not valid {file.suffix or 'TOML'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"setting 'config': {path} must hold a table of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build(cls: type[T], values: Mapping[str, Any], *, allow_unknown: bool = False) -> T:
    """Build ``cls`` from a mapping keyed by setting key; unknown keys are an error."""
    specs = {spec.key: spec for spec in option_specs(cls)}
    if not allow_unknown:
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise ConfigError(f"unknown setting '{unknown[0]}'{nearest(unknown[0], specs)}; "
                              f"known settings: {', '.join(sorted(specs))}")
    kwargs = {}
    for key, spec in specs.items():
        if key in values:
            kwargs[spec.field] = _coerce(spec, values[key])
        elif spec.default is dataclasses.MISSING:
            raise ConfigError(f"setting '{key}' is missing and has no default; pass {spec.flag}")
        elif spec.duration and not isinstance(spec.default, int):
            kwargs[spec.field] = parse_duration_ns(spec.default, key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(str(e)) from None


def add_flags(parser: argparse.ArgumentParser, classes: Sequence[type],
              defaults: Mapping[str, Any] | None = None) -> None:
    seen: set[str] = set()
    for cls in classes:
        for spec in option_specs(cls):
            if spec.key in seen:
                continue
            seen.add(spec.key)
            default = (defaults or {}).get(spec.key, spec.default)
            shown = "" if spec.secret or default in (dataclasses.MISSING, (), "") else f" (default: {default})"
            # A bare boolean flag (`--json`) means true; `--json false` still works.
            parser.add_argument(spec.flag, dest=spec.key, default=argparse.SUPPRESS, metavar="VALUE",
                                nargs="?" if spec.type is bool else None, const="true" if spec.type is bool else None,
                                help=f"{spec.help}{shown}; env {' or '.join(reversed(spec.env))}")


def gather(argv: Sequence[str] | None, classes: Sequence[type], *, prog: str,
           description: str, environ: Mapping[str, str] | None = None,
           defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raw values from file < env < flags for every setting of ``classes``.

    ``defaults`` only changes what ``--help`` shows (e.g. an agent class's own defaults).
    """
    parser = _Parser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON file of settings")
    add_flags(parser, classes, defaults)
    parsed, extra = parser.parse_known_args(argv)
    if extra:
        raise ConfigError(_unknown_flag(["--config", *(s.flag for c in classes for s in option_specs(c))], extra))
    args = vars(parsed)
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_path = args.pop("config", None) or environ.get("TF_CONFIG")
    if config_path:
        values.update(read_config_file(config_path))
    known = {spec.key: spec for cls in classes for spec in option_specs(cls)}
    for key, spec in known.items():
        for name in reversed(spec.env):
            if environ.get(name):
                values[key] = environ[name]
                break
    values.update(args)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting '{unknown[0]}'{nearest(unknown[0], known)} in {config_path}; "
                          f"known settings: {', '.join(sorted(known))}")
    return values


def pick(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The subset of ``values`` that belongs to ``cls``."""
    keys = {spec.key for spec in option_specs(cls)}
    return {k: v for k, v in values.items() if k in keys}


def _unknown_flag(flags: Sequence[str], extra: Sequence[str]) -> str:
    """``unknown setting: '--instrument' (did you mean '--instruments'?); see --help``."""
    flag = next((arg.split("=", 1)[0] for arg in extra if arg.startswith("-")), extra[0])
    return f"unknown setting: {names.shown(flag)}{nearest(flag, flags)}; see --help"


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of exiting, so main() owns exit codes."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(message.replace("unrecognized arguments", "unknown setting"))
