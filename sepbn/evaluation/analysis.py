"""What a SepBN network learned (paper section III, Fig. 3 and Fig. 4; issue 11, part 3).

- Attention. For every attentive SepBN layer (`SepBatchNorm2d`, `MixtureBatchNorm2d`) the weights
  pi (N, G, K) it uses on each face, captured by a forward pre-hook that calls the layer's own
  ``attention_weights`` (the layers are not changed; the hook costs one extra attention pass and exists
  only while `capture` runs). Summaries: the entropy of pi,

      H = -sum_k pi_k log pi_k   (nats),  mean over faces and channel groups,

  0 when every face uses one mapping set, log K when pi stays uniform (normalised: H / log K), and the
  mean pi per sub-domain (pose domain, dataset, WFLW attribute).
- Mapping sets. How alike the K sets (weight, bias: (K, C)) of each layer are: ``cosine`` is eq. (2),
  `sepbn.nn.branch_similarity` (1 for identical sets, Fig. 4); ``relative_spread`` is the mean over pairs
  of ||p_i - p_j|| / mean_k ||p_k|| (0 for identical sets). Scales near 1 have a cosine near 1 even when
  they differ, so the spread is the more sensitive number. The cosine of a set that is all zeros (a fresh
  layer's biases) is undefined and reported as NaN.
- Features. Globally average-pooled output of the shared backbone (what every head reads), for a
  t-SNE (scikit-learn's ``TSNE``; optional extra ``analyze``) coloured by dataset or sub-domain (Fig. 3).
- Training setup. The weight decay that was applied to the (K, C) mapping sets (`sepbn.train.optim`)
  and the tau the layers hold, read from a checkpoint's config and optimiser state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..nn.convert import sepbn_modules
from ..nn.sepbn import TemperatureMixin
from ..nn.similarity import branch_similarity

__all__ = [
    "attentive_layers", "Captured", "capture", "entropy", "attention_summary", "relative_spread",
    "mapping_similarity", "tsne", "training_setup",
]


def attentive_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every SepBN-family layer with an attention (``attention_weights``), in order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, TemperatureMixin) and callable(getattr(m, "attention_weights", None))]


@dataclass
class Captured:
    """Per-face captures, rows in input order: ``features`` (N, C) pooled backbone output; ``pi``:
    layer name -> (N, G, K) attention weights."""

    features: np.ndarray
    pi: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def capture(model: nn.Module, batches: Iterable[tuple[torch.Tensor, str | None]],
            device: str | torch.device = "cpu") -> Captured:
    """Run ``model`` (a `LandmarkNet`, in eval mode) on ``(images, protocol)`` batches and keep the pooled
    backbone features and every attentive layer's pi. The model is left as it was (hooks removed)."""
    layers = attentive_layers(model)
    pis: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
    feats: list[torch.Tensor] = []

    def keep_pi(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            pis[name].append(module.attention_weights(args[0]).float().cpu())
        return hook

    def keep_features(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        feats.append((output.flatten(2).mean(dim=-1) if output.dim() > 2 else output).float().cpu())

    handles = [m.register_forward_pre_hook(keep_pi(name)) for name, m in layers]
    handles.append(model.backbone.register_forward_hook(keep_features))
    was_training = model.training
    model.eval()
    try:
        for images, protocol in batches:
            model(images.to(device), protocols=protocol)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not feats:
        raise ValueError("analysis got no faces")
    return Captured(torch.cat(feats).numpy(), {name: torch.cat(v).numpy() for name, v in pis.items()})


def entropy(pi: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis (0 log 0 = 0).

    Examples:
        >>> entropy(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])).round(4).tolist()  # 0 and log 3
        [0.0, 1.0986]
    """
    p = np.asarray(pi, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return 0.0 - (p * logp).sum(axis=-1)  # 0.0 - x, not -x: no -0.0 for a one-hot row


def _stats(pi: np.ndarray) -> dict[str, Any]:
    k = pi.shape[-1]
    h = float(entropy(pi).mean())
    return {"faces": int(pi.shape[0]), "entropy": h, "entropy_normalised": h / math.log(k) if k > 1 else float("nan"),
            "mean_pi": pi.mean(axis=0).tolist()}


def attention_summary(pi: np.ndarray, groupings: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Entropy of pi (N, G, K) (mean over faces and groups; also / log K) and mean pi (G, K), overall and
    per label of each grouping (name -> (N,) labels, e.g. pose domain or dataset)."""
    pi = np.asarray(pi, dtype=np.float64)
    if pi.ndim != 3:
        raise ValueError(f"pi must have shape (N, G, K), got {pi.shape}")
    out = {"groups": int(pi.shape[1]), "branches": int(pi.shape[2]), **_stats(pi), "by": {}}
    for name, labels in (groupings or {}).items():
        labels = np.asarray(labels)
        if labels.shape != (pi.shape[0],):
            raise ValueError(f"grouping {name!r}: {labels.shape[0]} labels for {pi.shape[0]} faces")
        out["by"][name] = {str(v): _stats(pi[labels == v]) for v in _ordered(labels)}
    return out


def _ordered(labels: np.ndarray) -> list:
    seen: dict = {}
    for v in labels.tolist():
        seen.setdefault(v, None)
    return sorted(seen, key=str)


def relative_spread(vectors: torch.Tensor) -> float:
    """Mean over pairs i < j of ||v_i - v_j|| / mean_k ||v_k|| for rows of (K, D); NaN when K < 2.

    Examples:
        >>> relative_spread(torch.ones(3, 4)), relative_spread(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        (0.0, 1.4142135623730951)
    """
    v = vectors.detach().double().reshape(vectors.shape[0], -1)
    k = v.shape[0]
    if k < 2:
        return float("nan")
    i, j = torch.triu_indices(k, k, offset=1)
    scale = float(v.norm(dim=1).mean())
    return float((v[i] - v[j]).norm(dim=1).mean()) / scale if scale > 0 else 0.0


def mapping_similarity(model: nn.Module) -> dict[str, dict[str, dict[str, float]]]:
    """{layer: {parameter kind: {"cosine": eq. (2), "relative_spread": ...}}} for every SepBN-family layer."""
    cosine = branch_similarity(model)

    def cos(name: str, kind: str, values: torch.Tensor) -> float:
        # a zero set (a fresh layer's biases) has no direction: eq. (2) is undefined there, not 0
        return float("nan") if bool((values.reshape(len(values), -1).norm(dim=1) == 0).any()) else cosine[name][kind]

    return {name: {kind: {"cosine": cos(name, kind, values), "relative_spread": relative_spread(values)}
                   for kind, values in module.branch_parameters().items()}
            for name, module in sepbn_modules(model)}


def tsne(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of (N, C) features (scikit-learn; the perplexity is capped below N / 3 for small sets)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ModuleNotFoundError("the t-SNE needs scikit-learn: pip install 'sepbn[analyze]'") from None
    x = np.asarray(features, dtype=np.float64)
    if x.shape[0] < 4:
        raise ValueError(f"a t-SNE needs at least 4 faces, got {x.shape[0]}")
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)  # channels on one scale: BN-free heads may not be
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def training_setup(config: Mapping | None, optimizer: Mapping | None, model: nn.Module) -> dict[str, Any]:
    """Weight decay on the SepBN mapping sets and the tau of each attentive layer.

    ``config``: the checkpoint's experiment config as a dict; ``optimizer``: its optimiser state dict
    (``param_groups`` carry the group names of `sepbn.train.optim`), or None for a weights folder.
    """
    optim = dict((config or {}).get("optim", {}))
    schedule = dict((config or {}).get("schedule", {}))
    wd, sep_wd = optim.get("weight_decay"), optim.get("sepbn_weight_decay")
    applied = None
    for group in (optimizer or {}).get("param_groups", []):
        if group.get("name") == "sepbn_mapping":
            applied = group.get("weight_decay")
    taus = {name: m.temperature for name, m in attentive_layers(model)}
    return {
        "optimizer": optim.get("name"),
        "decay_kind": {"sgd": "L2 added to the gradient", "adamw": "decoupled (AdamW)"}.get(optim.get("name"), None),
        "weight_decay": wd,
        "sepbn_weight_decay": wd if sep_wd is None else sep_wd,
        "sepbn_weight_decay_from": "optim.weight_decay (one value for the whole network)" if sep_wd is None
        else "optim.sepbn_weight_decay",
        "sepbn_weight_decay_in_optimizer_state": applied,
        "tau": taus,
        "tau_schedule": {k: schedule.get(k) for k in ("tau_start", "tau_end", "tau_epochs", "epochs")},
    }
