"""create_model: build a LandmarkNet from plain arguments (paper Table I, Fig. 5, section V-D).

``MODELS`` is a plain dict from architecture name to a typed builder; ``NORMS`` one from norm
name to the layer class. No registry, one hop from a name to the code.

SepBN placement (``placement``):

* ``"vanilla"``: a subset of block indices 0..5 (Table VI: block i outputs side 128 / 2**(i+1),
  so 0..5 are the 64^2 ... 2^2 columns). Default: all six (Table VI's best).
* ``"resnext50"``, ``"mobilenetv2"``: a subset of ``{"bn1", "bn2", "bn3"}``, applied to every
  bottleneck / inverted-residual block (Fig. 6, Table X). Default: ``["bn3"]`` (section V-D).

The Vanilla CNN is built with the chosen norm layer in the chosen blocks; the torchvision
backbones are built (and ImageNet-initialised) with BatchNorm2d, then the selected BNs are
replaced with ``sepbn.nn.convert_to_sepbn(..., where=...)``, which copies their statistics and
affine parameters into every branch.

Heads: one per protocol, with the Fig. 5 conv adapter when ``adapter`` is true. ``adapter=None``
(default) means "on for multi-protocol (CNT) models, off for single-protocol ones", so the
single-protocol Vanilla CNN is exactly Table I (the paper's "Vanilla CNN (BN)/(SepBN)" baselines)
while a CNT model's branches match Fig. 5. ``model_args`` stores the resolved value, so a CNT
stage-2 model (``LandmarkNet.select``) and every rebuilt checkpoint keep their adapters.

Head (``head``): ``"fc"`` (default) is the paper's regressor of each network (Table I's FlattenHead,
the torchvision PooledHead); ``"integral"`` is :class:`~sepbn.models.heads.IntegralHead`, a soft-argmax
per point on the last feature map. With the Vanilla CNN it drops the max-pools of the last two
blocks, so their convolutions run on (and the head reads) the ``input_size / 16`` map (8x8 at 128 px).
``"integral_fine"`` (Vanilla CNN only) reads a map twice as fine, ``input_size / 8``: the last map is
added, through a 1x1 conv and a bilinear 2x upsampling, to block 3's map before its pool (a top-down
skip, as in feature pyramids), for a few percent more multiply-adds.

Protocols: ``Protocol`` objects (anything with ``name`` and ``num_points``) are used as given;
a built-in name is resolved once by ``sepbn.protocols.get_protocol`` (the ground floor, numpy only:
``sepbn.models`` never loads ``sepbn.data`` or OpenCV). ``model_args`` also stores ``num_points``,
so networks for user-defined protocols rebuild without the protocol file (their definitions travel
in the checkpoint's ``protocols``).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..nn import BruteForceSepBN2d, MixtureBatchNorm2d, SepBatchNorm2d, convert_to_sepbn
from ..protocols import PROTOCOLS, get_protocol
from .heads import FlattenHead, IntegralHead, PooledHead
from .landmark_net import LandmarkNet
from .mobilenet import CLASSIFIER_DROPOUT, MobileNetV2Backbone
from .resnext import ResNeXt50Backbone
from .vanilla_cnn import TABLE_I_CHANNELS, TABLE_I_HIDDEN, VanillaFeatures, scale_width

__all__ = ["create_model", "BuildSpec", "MODELS", "NORMS", "HEADS", "TORCHVISION_SLOTS", "resolve_protocols"]

NORMS: dict[str, Callable[..., nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "sepbn": SepBatchNorm2d,
    "bruteforce": BruteForceSepBN2d,
    "mixture": MixtureBatchNorm2d,  # the authors' public code (PROTOCOLS.md, "Gotchas")
}

HEADS = ("fc", "integral", "integral_fine")
# Heads that read a map with a soft-argmax per point.
INTEGRAL_HEADS = ("integral", "integral_fine")
# The integral head's Vanilla CNN keeps the side of its last two blocks: a map of input_size / 16.
INTEGRAL_VANILLA_POOLS = 4

TORCHVISION_SLOTS = ("bn1", "bn2", "bn3")
VANILLA_BLOCKS = tuple(range(len(TABLE_I_CHANNELS)))
DEFAULT_PLACEMENT: dict[str, tuple] = {
    "vanilla": VANILLA_BLOCKS,
    "resnext50": ("bn3",),
    "mobilenetv2": ("bn3",),
}


def resolve_protocols(protocols: Sequence[Any], num_points: Mapping[str, int] | None = None) -> dict[str, int]:
    """Protocol names or objects -> {canonical name: L}, in the given order.

    A name found in ``num_points`` uses that count (a rebuild from ``model_args``; checked against
    the built-in table when the name is also a built-in protocol); other names go through
    ``get_protocol`` (aliases, .json/.toml).
    """
    if isinstance(protocols, str) or hasattr(protocols, "num_points") or len(protocols) == 0:
        raise ValueError(f"protocols must be a non-empty sequence of names or Protocol objects, got {protocols!r}")
    given = dict(num_points or {})
    out: dict[str, int] = {}
    for p in protocols:
        if not isinstance(p, str):
            if not (isinstance(getattr(p, "name", None), str) and hasattr(p, "num_points")):
                raise ValueError(f"a protocol must be a name or have .name and .num_points, got {p!r}")
            name, count = p.name, int(p.num_points)
        elif p in given:
            name, count = p, int(given[p])
            known = PROTOCOLS.get(p)
            if known is not None and known.num_points != count:
                raise ValueError(f"num_points[{p!r}] = {count} contradicts protocol {p!r} with {known.num_points} points")
        else:
            proto = get_protocol(p)
            name, count = proto.name, proto.num_points
        if name in out:
            raise ValueError(f"protocol {name!r} given twice in {list(protocols)!r}")
        if count < 1:
            raise ValueError(f"protocol {name!r}: num_points must be >= 1, got {count}")
        out[name] = count
    return out


def _placement(arch: str, norm: str, placement: Sequence | None) -> tuple | None:
    """Validated, sorted placement; None for plain BN."""
    if norm == "bn":
        if placement is not None:
            raise ValueError(f"placement={placement!r} needs norm other than 'bn'")
        return None
    if placement is None:
        return DEFAULT_PLACEMENT[arch]
    if isinstance(placement, (str, int)):
        placement = [placement]
    allowed = VANILLA_BLOCKS if arch == "vanilla" else TORCHVISION_SLOTS
    chosen = set(placement)
    if not chosen or not chosen <= set(allowed):
        raise ValueError(f"placement for {arch!r} must be a non-empty subset of {list(allowed)}, got {placement!r}")
    return tuple(sorted(chosen))


@dataclass(frozen=True)
class BuildSpec:
    """Validated create_model arguments handed to a builder (``heads``: protocol name -> L)."""

    heads: Mapping[str, int]
    norm: str
    norm_kwargs: Mapping[str, Any]
    placement: tuple | None  # None: plain BN everywhere
    width: float
    input_size: int
    pretrained: bool | str | os.PathLike
    adapter: bool
    head: str = "fc"


def build_vanilla(spec: BuildSpec) -> tuple[nn.Module, nn.ModuleDict]:
    """Table I backbone (norm in the ``placement`` blocks, BatchNorm2d elsewhere) + FlattenHead per protocol."""
    if spec.pretrained:
        raise ValueError(f"the Vanilla CNN has no pretrained weights; got pretrained={spec.pretrained!r}")
    chosen = set(spec.placement or ())
    sep = functools.partial(NORMS[spec.norm], **spec.norm_kwargs)
    norms = [sep if i in chosen else nn.BatchNorm2d for i in VANILLA_BLOCKS]
    integral = spec.head in INTEGRAL_HEADS
    pools = INTEGRAL_VANILLA_POOLS if integral else len(VANILLA_BLOCKS)
    backbone = VanillaFeatures(
        norms, width=spec.width, input_size=spec.input_size, pools=pools, top_down=spec.head == "integral_fine"
    )
    if integral:
        return backbone, _integral_heads(backbone.out_channels, spec)
    hidden = scale_width(TABLE_I_HIDDEN, spec.width)
    return backbone, nn.ModuleDict(
        {
            name: FlattenHead(backbone.out_channels, backbone.out_size, L, hidden=hidden, adapter=spec.adapter)
            for name, L in spec.heads.items()
        }
    )


def _integral_heads(channels: int, spec: BuildSpec) -> nn.ModuleDict:
    return nn.ModuleDict(
        {name: IntegralHead(channels, L, adapter=spec.adapter) for name, L in spec.heads.items()}
    )


def _torchvision(
    backbone: ResNeXt50Backbone | MobileNetV2Backbone, spec: BuildSpec, dropout: float
) -> tuple[nn.Module, nn.ModuleDict]:
    """Convert the BNs of the placement slots, then one PooledHead per protocol."""
    if spec.head == "integral_fine":
        raise ValueError("head 'integral_fine' is built for the Vanilla CNN only; use head='integral'")
    if spec.placement is not None:
        slots = backbone.bn_slots()
        names = {n for s in spec.placement for n in slots[s]}
        convert_to_sepbn(backbone, where=lambda name, module: name in names, layer=NORMS[spec.norm], **spec.norm_kwargs)
    if spec.head == "integral":
        return backbone, _integral_heads(backbone.out_channels, spec)
    return backbone, nn.ModuleDict(
        {
            name: PooledHead(backbone.out_channels, L, dropout=dropout, adapter=spec.adapter)
            for name, L in spec.heads.items()
        }
    )


def _check_tv_input(arch: str, input_size: int) -> None:
    if input_size < 32:
        raise ValueError(f"{arch} needs input_size >= 32 (stride 32), got {input_size}")


def build_resnext50(spec: BuildSpec) -> tuple[nn.Module, nn.ModuleDict]:
    """torchvision ResNeXt-50 32x4d, norm at the ``placement`` slots of every bottleneck, PooledHead per protocol."""
    if spec.width != 1.0:
        raise ValueError(f"resnext50 has a fixed width (32x4d); width must be 1.0, got {spec.width}")
    _check_tv_input("resnext50", spec.input_size)
    return _torchvision(ResNeXt50Backbone(spec.pretrained), spec, dropout=0.0)


def build_mobilenetv2(spec: BuildSpec) -> tuple[nn.Module, nn.ModuleDict]:
    """torchvision MobileNetV2 (``width_mult=width``), norm at the ``placement`` slots, PooledHead per protocol."""
    _check_tv_input("mobilenetv2", spec.input_size)
    return _torchvision(MobileNetV2Backbone(spec.pretrained, width=spec.width), spec, dropout=CLASSIFIER_DROPOUT)


MODELS: dict[str, Callable[[BuildSpec], tuple[nn.Module, nn.ModuleDict]]] = {
    "vanilla": build_vanilla,
    "resnext50": build_resnext50,
    "mobilenetv2": build_mobilenetv2,
}


def create_model(
    arch: str,
    protocols: Sequence[Any],
    *,
    norm: str = "bn",
    norm_kwargs: Mapping[str, Any] | None = None,
    placement: Sequence[int] | Sequence[str] | None = None,
    width: float = 1.0,
    input_size: int = 128,
    pretrained: bool | str | os.PathLike = False,
    adapter: bool | None = None,
    num_points: Mapping[str, int] | None = None,
    head: str = "fc",
) -> LandmarkNet:
    """Build a :class:`LandmarkNet` with one head per protocol.

    Args:
        arch: ``"vanilla"`` (Table I), ``"resnext50"`` or ``"mobilenetv2"`` (section V-D).
        protocols: protocol names (``"wflw98"``, aliases such as ``"wflw"``, a .json/.toml path) or
            :class:`~sepbn.protocols.Protocol` objects; one head each, in this order.
        norm: ``"bn"``, ``"sepbn"`` (:class:`sepbn.nn.SepBatchNorm2d`), ``"bruteforce"``
            (:class:`sepbn.nn.BruteForceSepBN2d`, needs ``sepbn.nn.domains``) or ``"mixture"``
            (:class:`sepbn.nn.MixtureBatchNorm2d`, the authors' public-code variant).
        norm_kwargs: keyword arguments of that layer (e.g. ``num_branches``, ``num_groups``,
            ``pool_size``, ``attention``, ``aggregation``); must be JSON-able.
        placement: where the norm goes (see the module docstring); ``None``: the paper's choice.
        width: channel multiplier (vanilla, mobilenetv2); resnext50 takes 1.0 only.
        input_size: side of the square input crop (128 in the paper).
        pretrained: ImageNet weights for the torchvision backbones: ``True`` (hub cache or
            download) or a local state-dict file; never stored in ``model_args``.
        adapter: add Fig. 5's conv adapter to each head; ``None``: only if there are several protocols.
        num_points: point counts for protocol names that are not built in (``model_args`` stores it).
        head: ``"fc"`` (the paper's regressors), ``"integral"`` or ``"integral_fine"`` (soft-argmax
            heatmaps, see above).

    The returned network's ``model_args`` rebuilds it: ``create_model(**net.model_args)``.

    Examples:
        >>> net = create_model("vanilla", ["cofw29", "aflw19"], width=1 / 32, input_size=64)
        >>> net.output_protocols, net.model_args["adapter"]
        (('cofw29', 'aflw19'), True)
    """
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(MODELS)}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from {sorted(NORMS)}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose from {list(HEADS)}")
    norm_kwargs = dict(norm_kwargs or {})
    try:
        json.dumps(norm_kwargs)
    except TypeError as err:
        raise ValueError(f"norm_kwargs must be JSON-able (model_args is saved in checkpoints): {err}") from None
    heads = resolve_protocols(protocols, num_points)
    placed = _placement(arch, norm, placement)
    use_adapter = len(heads) > 1 if adapter is None else bool(adapter)
    spec = BuildSpec(heads, norm, norm_kwargs, placed, float(width), int(input_size), pretrained, use_adapter, head)
    backbone, head_modules = MODELS[arch](spec)
    model_args = {
        "arch": arch,
        "protocols": list(heads),
        "num_points": dict(heads),
        "norm": norm,
        "norm_kwargs": norm_kwargs,
        "placement": None if placed is None else list(placed),
        "width": float(width),
        "input_size": int(input_size),
        "pretrained": False,  # the checkpoint's state dict carries the weights
        "adapter": use_adapter,
        "head": head,
    }
    return LandmarkNet(backbone, head_modules, model_args)
