"""Configs from files: TOML/JSON with an optional ``base``, ``--set`` overrides, and TOML back out.

Every key is type-checked against :mod:`sepbn.config.schema`; an unknown key is an error naming the
key and the keys that exist. ``--set optim.lr=2e-3`` parses the value as the field's type.

A file may start from another: ``base = "../pretrained/300w68.toml"`` (relative to the file) loads
that file first and lays this one over it, table by table; a list (``[[data.train]]``, ``placement``)
or a value is replaced whole, never appended to. Bases may chain; a loop is an error. The resolved
config, with no ``base`` left, is what a run writes and a checkpoint stores.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..protocols import Protocol, get_protocol, protocol_spec
from .schema import Config, ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["load_config", "read_config_file", "config_from_dict", "config_to_dict", "apply_overrides", "format_config"]


# --- dict <-> dataclass with type checking ---------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert lists to tuples and tables to dataclasses."""
    if tp is Protocol:  # the edge: a name, a file or a definition becomes the object, once
        try:
            return get_protocol(value)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{key}: {e}") from None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(tp, value, key)
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, Mapping):  # a single table where a list of tables is expected
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - a programming error


def _build(cls: type, d: Mapping, prefix: str) -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        where = f"[{prefix}]" if prefix else "top level"
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys: {names}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in d.items()}
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"[{prefix}] lacks required key(s) {missing}")
    return cls(**kwargs)


def config_from_dict(d: Mapping) -> Config:
    """Build and validate a :class:`Config` from nested mappings (a parsed TOML/JSON file)."""
    return _build(Config, d, "")


def config_to_dict(c: Any) -> Any:
    """A JSON-able nested dict (tuples become lists); ``config_from_dict`` reads it back."""
    if isinstance(c, Protocol):
        return protocol_spec(c)
    if dataclasses.is_dataclass(c):
        return {f.name: config_to_dict(getattr(c, f.name)) for f in dataclasses.fields(c)}
    if isinstance(c, (list, tuple)):
        return [config_to_dict(v) for v in c]
    if isinstance(c, Mapping):
        return {k: config_to_dict(v) for k, v in c.items()}
    return c


# --- overrides -------------------------------------------------------------------------------

def _field_type(key: str) -> Any:
    """The annotation of a dotted key such as ``optim.lr`` or ``data.train.0.source``."""
    tp: Any = Config
    walked: list[str] = []
    for part in key.split("."):
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is tuple:
            if not part.isdigit():
                raise ConfigError(f"--set {key}: {'.'.join(walked)} is a list; index it with a number")
            tp = typing.get_args(tp)[0]
        elif dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            if part not in hints:
                raise ConfigError(
                    f"--set {key}: unknown key {part!r} in [{'.'.join(walked) or 'top level'}]; "
                    f"known keys: {list(hints)}"
                )
            tp = hints[part]
        elif tp is dict or typing.get_origin(tp) is dict:
            return Any  # free-form table (norm_kwargs, options)
        else:
            raise ConfigError(f"--set {key}: {'.'.join(walked)} is not a table")
        walked.append(part)
    return tp


def _parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse an override's text as the field's type: a JSON/TOML literal when it fits, else the text."""
    if text.lower() in ("none", "null"):
        return None
    candidates: list[Any] = []
    try:
        candidates.append(json.loads(text))
    except json.JSONDecodeError:
        if text.lower() in ("true", "false"):
            candidates.append(text.lower() == "true")
    if tp is Any:
        return candidates[0] if candidates else text
    candidates.append(text)
    for value in candidates:
        try:
            _coerce(value, tp, key)
            return value
        except ConfigError:
            continue
    raise ConfigError(f"--set {key}={text}: expected {_type_name(tp)}")


def _merge(base: dict, top: Mapping) -> dict:
    """``top`` over ``base``, table by table (lists and scalars are replaced)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def apply_overrides(d: Mapping, overrides: Sequence[str]) -> dict:
    """Apply ``key.sub=value`` overrides to a nested config dict (a copy is returned)."""
    out = _merge(config_to_dict(Config()), json.loads(json.dumps(config_to_dict(dict(d)))))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        tp = _field_type(key)
        value = _parse_value(text.strip(), tp, key)
        node: Any = out
        parts = key.split(".")
        for p in parts[:-1]:
            if isinstance(node, list):
                idx = int(p)
                if idx >= len(node):
                    raise ConfigError(f"--set {key}: index {idx} out of range (list has {len(node)} items)")
                node = node[idx]
            else:
                node = node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            idx = int(last)
            if idx >= len(node):
                raise ConfigError(f"--set {key}: index {idx} out of range (list has {len(node)} items)")
            node[idx] = value
        else:
            node[last] = value
    return out


def _read_one(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of sections, got {type(data).__name__}")
    return data


def read_config_file(path: str | Path) -> dict:
    """The plain nested dict of a ``.toml``/``.json`` config with its ``base`` chain laid under it."""
    chain: list[Path] = []
    path = Path(path)
    layers = []
    while True:
        resolved = path.resolve()
        if resolved in chain:
            loop = " -> ".join(str(p) for p in chain + [resolved])
            raise ConfigError(f"{chain[-1]}: base: the bases form a loop: {loop}")
        chain.append(resolved)
        data = _read_one(path)
        base = data.pop("base", None)
        layers.append(data)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: base: expected the path of a config file, got {base!r}")
        path = path.parent / base
    out: dict = {}
    for layer in reversed(layers):
        out = _merge(out, layer)
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a ``.toml`` or ``.json`` config (or the defaults when ``path`` is None) and apply overrides."""
    data = read_config_file(path) if path is not None else {}
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def format_config(c: Config) -> str:
    """The resolved config as TOML (None values are omitted: every optional key defaults to None).

    ``load_config`` reads the text back to the same config; runs print it and store it as config.toml.
    """
    lines: list[str] = []

    def emit(prefix: str, d: Mapping) -> None:
        tables = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, Mapping) and dataclass_table(prefix, k):
                tables.append((k, v, False))
            elif isinstance(v, list) and v and all(isinstance(i, Mapping) for i in v):
                tables.append((k, v, True))
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v, many in tables:
            name = f"{prefix}.{k}" if prefix else k
            for item in (v if many else [v]):
                lines.append(f"\n[[{name}]]" if many else f"\n[{name}]")
                emit(f"{name}.0" if many else name, item)

    def dataclass_table(prefix: str, k: str) -> bool:
        tp = _field_type(f"{prefix}.{k}" if prefix else k)
        return dataclasses.is_dataclass(tp) and tp is not Protocol  # a definition is written inline

    emit("", config_to_dict(c))
    return "\n".join(lines).strip() + "\n"
