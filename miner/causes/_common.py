"""Defaults and argument checks shared by the rooms of :mod:`hardcase.miner.causes`."""

from __future__ import annotations

import numpy as np

from hardcase.miner._validation import check_fraction, check_int_array_1d
from hardcase.miner.vocabulary import METRICS

#: Default number of neighbours.
DEFAULT_K = 10
#: Default significance level of the typicality and imbalance tests.
DEFAULT_ALPHA = 0.05

_TINY = float(np.finfo(np.float32).eps)


def _check_metric(metric) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def _check_alpha(alpha) -> float:
    alpha = check_fraction(alpha, name="alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return alpha


def _check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has D={a.shape[1]} columns but {name_b} has D={b.shape[1]}; "
            "both must come from the same embedding layer"
        )


def _check_train_labels(train_labels, *, n: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    arr = check_int_array_1d(train_labels, name="train_labels", n=n, n_name="train_embeddings")
    bad = np.flatnonzero(arr < -1)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"train_labels has value {int(arr[i])} at index {i}; -1 (unknown) is the only negative value allowed")
    top = int(arr.max()) + 1 if arr.size else 0
    if n_classes is None:
        n_classes = max(top, 1)
    elif top > n_classes:
        i = int(np.flatnonzero(arr >= n_classes)[0])
        raise ValueError(f"train_labels has value {int(arr[i])} at index {i} but there are K={n_classes} classes")
    return arr, n_classes
