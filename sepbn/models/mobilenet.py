"""MobileNetV2 backbone from torchvision, with SepBN slots BN1/BN2/BN3 (paper V-D, Fig. 6, Table X).

torchvision's ``InvertedResidual.conv`` is, for expansion t > 1::

    conv.0 = [1x1 expand conv, **BN1**, ReLU6]
    conv.1 = [3x3 depthwise conv, **BN2**, ReLU6]
    conv.2 = 1x1 linear projection conv,  conv.3 = **BN3**

(Fig. 6, right: expand BN, depthwise BN, project BN). The first block (``features.1``, t = 1)
has no expansion: ``conv.0`` is the depthwise stage (BN2) and ``conv.2`` the projection BN
(BN3); it has no BN1, so placement "bn1" leaves it unchanged. The stem (``features.0``) and the
final 1x1 conv to 1280 channels (``features.18``) are not inverted-residual blocks and keep
BatchNorm2d. Table X (COFW): every placement helps MobileNetV2; BN3 is the one the paper keeps.

The backbone is ``features`` (stride 32); pooling, Dropout(0.2) and the Linear(1280, 2L) live
in :class:`~sepbn.models.heads.PooledHead`. ``width`` is torchvision's ``width_mult``.
"""

from __future__ import annotations

import os

from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from .weights import PretrainedWeightsError, load_imagenet_weights

__all__ = ["MobileNetV2Backbone", "BN_SLOTS", "CLASSIFIER_DROPOUT"]

BN_SLOTS = ("bn1", "bn2", "bn3")
CLASSIFIER_DROPOUT = 0.2  # torchvision's classifier keeps it; section V-D only swaps the Linear


def _block_slots(block: InvertedResidual) -> dict[str, str]:
    """Slot -> name (relative to the block) of its norm layers, found by position, not by type,
    so the mapping still holds after the BNs have been replaced by SepBN."""
    stages = list(block.conv.named_children())
    *convs, _project_conv, (bn3_name, _) = stages
    slots = {"bn2": f"conv.{convs[-1][0]}.1", "bn3": f"conv.{bn3_name}"}
    if len(convs) == 2:
        slots["bn1"] = f"conv.{convs[0][0]}.1"
    return slots


class MobileNetV2Backbone(nn.Module):
    """torchvision ``mobilenet_v2(width_mult=width).features``; outputs (N, 1280, H/32, W/32) for width <= 1."""

    def __init__(self, pretrained: bool | str | os.PathLike = False, *, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        net = mobilenet_v2(weights=None, width_mult=width)
        if pretrained:
            if width != 1.0:
                raise PretrainedWeightsError(f"ImageNet weights exist for width 1.0 only, got width={width}")
            load_imagenet_weights(net, MobileNet_V2_Weights.DEFAULT.url, pretrained, "mobilenet_v2")
        self.features = net.features
        self.out_channels = net.last_channel

    def bn_slots(self) -> dict[str, list[str]]:
        """Slot ("bn1", "bn2", "bn3") -> qualified names of that norm layer in every inverted-residual block."""
        slots: dict[str, list[str]] = {s: [] for s in BN_SLOTS}
        for name, module in self.named_modules():
            if isinstance(module, InvertedResidual):
                for s, rel in _block_slots(module).items():
                    slots[s].append(f"{name}.{rel}")
        return slots

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
