"""The metrics tasks score with, by name: scikit-learn's and SciPy's, imported when first computed. Both take seconds
to import, which every process of a launch and every Ray worker would otherwise pay before it trains."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], Any]  # (labels, predictions) -> value


def _sklearn(name: str) -> Metric:
    """sklearn.metrics.`name`."""

    def metric(labels: np.ndarray, predictions: np.ndarray) -> Any:
        from sklearn import metrics

        return getattr(metrics, name)(labels, predictions)

    return metric


def _correlation(name: str) -> Metric:
    """The statistic of scipy.stats.`name`."""

    def metric(labels: np.ndarray, predictions: np.ndarray) -> Any:
        from scipy import stats

        return getattr(stats, name)(labels, predictions)[0]

    return metric


# Hugging Face evaluate's glue metric; a name "A_and_B" is the mean of A and B (GLUE's one number for MRPC, QQP, STS-B).
METRICS: dict[str, Metric] = {
    "accuracy": _sklearn("accuracy_score"),
    "f1": _sklearn("f1_score"),
    "matthews_correlation": _sklearn("matthews_corrcoef"),
    "pearson": _correlation("pearsonr"),
    "spearmanr": _correlation("spearmanr"),
}
