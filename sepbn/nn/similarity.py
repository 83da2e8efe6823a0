"""Branch similarity (paper section III-A, eq. 2 and Fig. 4).

    S = mean over pairs i < j of cos(p_i, p_j)        (eq. 2 with K = 3: [s(p1,p2) + s(p1,p3) + s(p2,p3)] / 3)

for each parameter kind of a layer's K branches: running mean, running var, scale and shift of brute-force
(and mixture) layers; weight and bias (the K mapping sets) of SepBatchNorm2d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .convert import sepbn_modules

__all__ = ["mean_pairwise_cosine", "branch_similarity"]


def mean_pairwise_cosine(vectors: Tensor) -> float:
    """Mean cosine similarity over all pairs of rows of ``vectors`` (K, D); NaN when K < 2 (no pairs).

    Examples:
        >>> round(mean_pairwise_cosine(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])), 4)  # (0 + 2 * .7071) / 3
        0.4714
    """
    k = vectors.shape[0]
    if k < 2:
        return float("nan")
    v = F.normalize(vectors.detach().double().reshape(k, -1), dim=1)
    i, j = torch.triu_indices(k, k, offset=1)
    return float((v[i] * v[j]).sum(dim=1).mean())


def branch_similarity(model: nn.Module) -> dict[str, dict[str, float]]:
    """{layer name: {parameter kind: eq. (2) similarity}} for every SepBN-family layer of ``model``.

    Examples:
        >>> from sepbn.nn import BruteForceSepBN2d
        >>> sims = branch_similarity(nn.Sequential(BruteForceSepBN2d(4, num_domains=3)))
        >>> sims["0"]["running_var"], sorted(sims["0"])
        (1.0, ['bias', 'running_mean', 'running_var', 'weight'])
    """
    return {name: {kind: mean_pairwise_cosine(values) for kind, values in module.branch_parameters().items()}
            for name, module in sepbn_modules(model)}
