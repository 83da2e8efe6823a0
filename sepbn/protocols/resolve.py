"""Names, files and stored definitions -> :class:`~sepbn.protocols.Protocol`: the one resolution, at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .builtin import PROTOCOLS
from .protocol import ALIASES, Protocol, protocol_from_dict

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["get_protocol", "load_protocol", "protocol_spec", "spec_name", "require_protocol"]


def load_protocol(path: str | Path) -> Protocol:
    """Read a user-defined protocol from a ``.json`` or ``.toml`` file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the protocol file ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        return protocol_from_dict(data)
    except (ValueError, TypeError) as e:  # JSON/TOML syntax errors are ValueErrors too
        raise ValueError(f"{path}: {e}") from None


def get_protocol(spec: str | Path | Mapping | Protocol) -> Protocol:
    """THE resolver: a built-in name (``"wflw98"``, ``"300w68"``, ``"cofw29"``, ``"aflw19"``, ``"5pt"``
    or an alias), a ``.json`` / ``.toml`` file path, or a stored definition (a mapping, as
    :meth:`Protocol.to_dict` writes it) -> a :class:`Protocol`. A Protocol passes through.

    >>> get_protocol("300w68").num_points
    68
    """
    if isinstance(spec, Protocol):
        return spec
    if isinstance(spec, Mapping):
        return protocol_from_dict(spec)
    key = str(spec)
    if key.lower().endswith((".json", ".toml")):
        return load_protocol(key)
    key = ALIASES.get(key.lower(), key.lower())
    try:
        return PROTOCOLS[key]
    except KeyError:
        raise ValueError(
            f"unknown protocol {spec!r}; known: {sorted(PROTOCOLS)} (or a .json/.toml file)"
        ) from None


def protocol_spec(protocol: Protocol) -> str | dict:
    """What :func:`get_protocol` reads back to ``protocol``: a built-in's name, else its full definition
    (so configs and checkpoints of a user's protocol do not depend on its file)."""
    return protocol.name if PROTOCOLS.get(protocol.name) == protocol else protocol.to_dict()


def spec_name(spec: str | Mapping | Protocol) -> str:
    """The protocol name a stored spec stands for (a name, a file path, a definition), reading no file."""
    if isinstance(spec, Protocol):
        return spec.name
    if isinstance(spec, Mapping):
        return str(spec.get("name", ""))
    text = str(spec)
    return Path(text).stem if text.lower().endswith((".json", ".toml")) else text


def require_protocol(protocol: object) -> Protocol:
    """``protocol`` itself if it is a :class:`Protocol`; below the edge nothing resolves names."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"expected a sepbn.protocols.Protocol (resolve names once, with get_protocol), "
                        f"got {protocol!r}")
    return protocol
