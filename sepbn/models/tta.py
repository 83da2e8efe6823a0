"""Test-time flip averaging: the mean of a network's predictions on a crop and on its mirror image.

A landmark network trained with horizontal-flip augmentation predicts the mirrored face as well as
the face itself, with independent errors in part; averaging the two (the mirrored prediction
mapped back) is a standard cheap gain (mmpose's ``flip_test``). In normalised crop coordinates
``u = (x + 0.5) * 2 / S - 1`` the pixel mirror ``x' = S - 1 - x`` is ``u' = -u``, and point ``i`` of
the mirrored face is point ``flip_perm[i]`` of the original (the protocol's flip permutation).
It doubles the inference cost.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["unflip_points", "flip_average"]


def unflip_points(u: torch.Tensor, flip_perm: Sequence[int]) -> torch.Tensor:
    """Predictions (N, L, 2) on mirrored crops -> the same points in the unmirrored crops.

    Examples:
        >>> u = torch.tensor([[[-0.5, 0.125], [0.25, 0.5]]])
        >>> unflip_points(u, [1, 0]).tolist()
        [[[-0.25, 0.5], [0.5, 0.125]]]
    """
    perm = torch.as_tensor(list(flip_perm), dtype=torch.long, device=u.device)
    out = u.index_select(1, perm)  # a new tensor: the sign change below leaves ``u`` alone
    out[..., 0] = -out[..., 0]
    return out


def flip_average(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                 flip_perm: Sequence[int]) -> torch.Tensor:
    """``(forward(x) + unflip(forward(mirror(x)))) / 2`` for crops ``images`` (N, C, S, S).

    ``forward`` maps crops to normalised points (N, L, 2); both passes run as one batch.

    Examples:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> def net(t):  # a "network" that finds the brightest column's centre, mirror-consistent
        ...     col = t.mean(dim=(1, 2)).argmax(dim=1).float()
        ...     u = (col + 0.5) * 2 / 8 - 1
        ...     return torch.stack([u, torch.zeros_like(u)], -1)[:, None]
        >>> torch.allclose(flip_average(net, x, [0]), net(x))
        True
    """
    n = images.shape[0]
    both = forward(torch.cat([images, images.flip(-1)]))
    return (both[:n] + unflip_points(both[n:], flip_perm)) / 2
