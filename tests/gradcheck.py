"""Central finite differences, for checking analytic gradients in float64."""

from __future__ import annotations

import numpy as np


def numerical_gradient(loss, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d loss / d arr by central differences, perturbing ``arr`` in place one entry at a time."""
    grad = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
        saved = arr[idx]
        arr[idx] = saved + eps
        up = loss()
        arr[idx] = saved - eps
        down = loss()
        arr[idx] = saved
        grad[idx] = (up - down) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``|a - b| / (|a| + |b|)`` in the L2 norm (0 when both are 0)."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))
