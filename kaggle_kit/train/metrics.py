"""Training metrics: the runtime's (:mod:`kaggle_kit.runtime.metrics`, scikit-learn plus Kaggle's
MAP@k), re-exported here so training and `kit predict` compute them with the same code."""
from __future__ import annotations

from kaggle_kit.runtime.metrics import (  # noqa: F401  (re-exports)
    EPS,
    GREATER_IS_BETTER,
    average_precision,
    average_precision_at_k,
    binary_log_loss,
    column_averaged,
    compute_metrics,
    confusion_matrix,
    greater_is_better,
    is_metric,
    log_loss,
    map_at_k,
    map_k,
    metrics_from_probs,
    multi_label_metrics,
    roc_auc,
    scalar_metrics,
    sigmoid,
    single_label_metrics,
    softmax,
    top_k,
)
