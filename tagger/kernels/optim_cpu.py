"""CPU kernels of the optimizer step: the gradients' squared norm and a fused Adam update.

An Adam step written with NumPy makes about ten passes over every parameter (each ``*=``, ``+=``
and temporary is one); on a tagger's word-embedding table that is megabytes per pass and batch.
The kernel below reads the parameter, its gradient and both moments once and writes them back
once, with the gradient-clipping scale folded in.

Arrays are flat (callers pass ``reshape(-1)`` views); scalars come in the parameter's dtype, so
that a float32 update rounds like the NumPy float32 expression it replaces.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel


@kernel()
def sum_squares(x):
    """Sum of ``x * x`` over a flat array, accumulated in float64."""
    total = 0.0
    for i in range(x.shape[0]):
        value = np.float64(x[i])
        total += value * value
    return total


@kernel()
def adam_update(param, grad, m, v, scale, weight_decay, beta1, one_minus_beta1, beta2,
                one_minus_beta2, lr_t, eps_t):
    """One Adam step, in place on flat ``param``, ``m`` and ``v``.

    With ``g = scale * grad + weight_decay * param``: ``m = beta1 m + (1 - beta1) g``,
    ``v = beta2 v + (1 - beta2) g^2``, ``param -= lr_t m / (sqrt(v) + eps_t)``, where ``lr_t``
    and ``eps_t`` carry the bias corrections.
    """
    for i in range(param.shape[0]):
        g = grad[i] * scale
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        mi = m[i] * beta1 + one_minus_beta1 * g
        vi = v[i] * beta2 + one_minus_beta2 * (g * g)
        m[i] = mi
        v[i] = vi
        param[i] -= lr_t * mi / (np.sqrt(vi) + eps_t)
