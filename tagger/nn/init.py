"""Parameter initialisers. Each takes a NumPy ``Generator`` and returns a new array."""

from __future__ import annotations

import numpy as np


def uniform(rng: np.random.Generator, shape, scale: float, dtype=np.float32) -> np.ndarray:
    """Uniform in ``[-scale, scale]``."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def glorot_uniform(rng: np.random.Generator, shape, dtype=np.float32) -> np.ndarray:
    """Glorot/Xavier uniform for a ``(fan_in, fan_out)`` matrix."""
    fan_in, fan_out = shape[0], shape[-1]
    return uniform(rng, shape, float(np.sqrt(6.0 / (fan_in + fan_out))), dtype)


def orthogonal(rng: np.random.Generator, shape, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """A (semi-)orthogonal matrix (Saxe et al. 2014): orthonormal rows or columns, times gain."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the decomposition unique, hence the distribution uniform
    if rows < cols:
        q = q.T
    return (gain * q).astype(dtype)


def recurrent_orthogonal(rng: np.random.Generator, hidden: int, gates: int, dtype=np.float32):
    """An ``(H, gates*H)`` recurrent matrix with an orthogonal ``H x H`` block per gate."""
    return np.concatenate([orthogonal(rng, (hidden, hidden), dtype=dtype) for _ in range(gates)], 1)


def identity(shape, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """``gain`` times the identity: the IRNN recurrent initialisation (Le, Jaitly & Hinton 2015)."""
    return (gain * np.eye(shape[0], shape[1])).astype(dtype)
