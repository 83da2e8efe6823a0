"""sepbn.evaluation: pure metric functions (NME, FR, AUC, CED, WFLW subsets); numpy only."""

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

# evaluate() lives in sepbn.evaluation.evaluate: it needs torch and the crop maths (OpenCV), which
# the metrics above must not load (they run below the data stack).
