"""sepbn.evaluation: pure metric functions (NME, FR, AUC, CED, WFLW subsets)."""

from .metrics import (
    SubsetRow,
    auc,
    ced,
    failure_rate,
    format_subset_table,
    group_mean,
    nme,
    normalizer_label,
    plot_ced,
    wflw_subset_table,
)

__all__ = [
    "SubsetRow", "auc", "ced", "failure_rate", "format_subset_table", "group_mean", "nme",
    "normalizer_label", "plot_ced", "wflw_subset_table",
]

from .evaluate import EvalResult, evaluate  # noqa: E402  (needs torch; the metrics above do not)

__all__ += ["EvalResult", "evaluate"]
