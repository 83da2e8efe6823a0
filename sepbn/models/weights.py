"""ImageNet weights for the torchvision backbones (paper section V-D: "the parameters pre-trained
on the ImageNet dataset are kept"), found offline first.

``pretrained`` is ``False`` (random init, never touches the network), ``True`` (torchvision's
default weights: the file in torch's hub cache ``$TORCH_HOME/hub/checkpoints/<file>`` if present,
else a download) or a path to a local ``.pth``/``.pt``/``.safetensors`` state dict in torchvision
key layout. Any failure raises :class:`PretrainedWeightsError` whose message names the file, the
cache path and the URL, instead of a traceback from deep inside ``urllib``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["PretrainedWeightsError", "load_imagenet_weights", "hub_cache_path"]


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights were asked for but cannot be found, fetched or loaded."""


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps ``url`` (honours ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def _fetch(url: str, arch: str) -> dict[str, torch.Tensor]:
    cached = hub_cache_path(url)
    if cached.is_file():
        return _read_state_dict(cached)
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, map_location="cpu")
    except Exception as err:  # URLError, socket errors, hash mismatch: all mean "no usable file"
        raise PretrainedWeightsError(
            f"ImageNet weights for {arch} are not available offline and could not be downloaded "
            f"({type(err).__name__}: {err}).\n"
            f"  expected file: {cached}\n"
            f"  download it on a connected machine from {url} and copy it to that path "
            f"(set TORCH_HOME to change the cache root), or pass pretrained='/path/to/{os.path.basename(url)}', "
            f"or use pretrained=False."
        ) from None


def load_imagenet_weights(model: nn.Module, url: str, pretrained: bool | str | os.PathLike, arch: str) -> None:
    """Load torchvision ImageNet weights into ``model`` (a torchvision network) in place.

    Args:
        model: the torchvision model whose keys the file uses.
        url: torchvision's download URL for the default weights (its basename is the cache file).
        pretrained: ``True`` for the cache/download, or a local file path.
        arch: name used in error messages.
    """
    if pretrained is True:
        state, source = _fetch(url, arch), str(hub_cache_path(url))
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"weights file for {arch} not found: {path} (torchvision's file is {url})"
            )
        state, source = _read_state_dict(path), str(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[:3]
        raise PretrainedWeightsError(
            f"{source} does not match torchvision's {arch} layout: " + " | ".join(first)
        ) from None
