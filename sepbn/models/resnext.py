"""ResNeXt-50 (32x4d) backbone from torchvision, with SepBN slots BN1/BN2/BN3 (paper V-D, Fig. 6, Table X).

torchvision's ``Bottleneck`` is conv1x1 -> **bn1** -> ReLU -> grouped conv3x3 (32 groups) -> **bn2**
-> ReLU -> conv1x1 -> **bn3** -> (+ shortcut) -> ReLU; Fig. 6 (left) names these BN1, BN2, BN3.
The stem BN and the BNs of the projection shortcuts (``downsample.1``) belong to no slot and
always stay BatchNorm2d. Table X (COFW): SepBN at BN3 only is best (3.51 vs 3.95 NME);
BN2+BN3 and all three did not converge in the paper.

The backbone is the network up to ``layer4`` (stride 32: a 4x4x2048 map at 128 px input); the
average pool and the Linear(2048, 2L) live in :class:`~sepbn.models.heads.PooledHead`.
Module names keep torchvision's (``layer1.0.bn3``), so ImageNet state dicts load unchanged.
"""

from __future__ import annotations

import os

from torch import Tensor, nn
from torchvision.models import ResNeXt50_32X4D_Weights, resnext50_32x4d
from torchvision.models.resnet import Bottleneck

from .weights import load_imagenet_weights

__all__ = ["ResNeXt50Backbone", "BN_SLOTS"]

BN_SLOTS = ("bn1", "bn2", "bn3")


class ResNeXt50Backbone(nn.Module):
    """torchvision ``resnext50_32x4d`` without its pool and classifier; outputs (N, 2048, H/32, W/32).

    Args:
        pretrained: ``False``, ``True`` (torchvision's default ImageNet weights, from the hub cache
            or a download) or a local state-dict path; see :mod:`sepbn.models.weights`.
    """

    out_channels = 2048

    def __init__(self, pretrained: bool | str | os.PathLike = False) -> None:
        super().__init__()
        net = resnext50_32x4d(weights=None)
        if pretrained:
            load_imagenet_weights(net, ResNeXt50_32X4D_Weights.DEFAULT.url, pretrained, "resnext50_32x4d")
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def bn_slots(self) -> dict[str, list[str]]:
        """Slot ("bn1", "bn2", "bn3") -> qualified names of that BN in every bottleneck block."""
        slots: dict[str, list[str]] = {s: [] for s in BN_SLOTS}
        for name, module in self.named_modules():
            if isinstance(module, Bottleneck):
                for s in BN_SLOTS:
                    slots[s].append(f"{name}.{s}")
        return slots

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
