"""sepbn.nn — Separable Batch Normalization layers (paper section III). Imports torch only."""

from . import functional
from .attention import GroupedAttention, SqueezeExcitationAttention
from .bruteforce import BranchBatchNorm2d, BruteForceSepBN2d, best_per_sample, current_domains, domains, for_each_domain
from .convert import convert_to_sepbn, sepbn_modules, set_temperature
from .functional import sep_batch_norm
from .fuse import FoldedAway, MixedAffine2d, RoutedAffine2d, fuse_for_inference
from .mixture import MixtureBatchNorm2d
from .sepbn import SepBatchNorm2d
from .similarity import branch_similarity, mean_pairwise_cosine

__all__ = [
    "SepBatchNorm2d", "BruteForceSepBN2d", "MixtureBatchNorm2d", "BranchBatchNorm2d",
    "GroupedAttention", "SqueezeExcitationAttention", "sep_batch_norm", "functional",
    "domains", "current_domains", "for_each_domain", "best_per_sample",
    "fuse_for_inference", "MixedAffine2d", "RoutedAffine2d", "FoldedAway",
    "convert_to_sepbn", "set_temperature", "sepbn_modules", "branch_similarity", "mean_pairwise_cosine",
]
