"""Optimizers over plain dicts of NumPy arrays, gradient clipping and learning-rate decay.

Optimizers update the parameter arrays in place. Their state (moments, step count) is a dict of
arrays too, so that it can be saved with the model and training can resume exactly.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import optim_cpu


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """L2 norm of all gradients together, summed in a fixed (sorted-key) order in float64."""
    total = 0.0
    for name in sorted(grads):
        g = grads[name]
        if g.dtype in _KERNEL_DTYPES:
            total += optim_cpu.sum_squares(np.ascontiguousarray(g).reshape(-1))
        else:
            g = g.astype(np.float64).ravel()
            total += float(g @ g)
    return math.sqrt(total)


def clip_scale(norm: float, max_norm: float | None) -> float:
    """The factor that brings a global gradient norm down to ``max_norm`` (1 when it is under
    it, when clipping is off, or when the norm is not finite)."""
    if max_norm is not None and max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        return max_norm / (norm + 1e-12)
    return 1.0


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float | None) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    Clipping the global norm keeps the update's direction (Pascanu et al. 2013).

    Parameters
    ----------
    grads : dict
        Gradients, modified in place.
    max_norm : float or None
        Largest allowed norm; None or a non-positive value disables clipping.

    Returns
    -------
    float
        The norm before clipping (inf or nan when a gradient is not finite).
    """
    norm = global_norm(grads)
    scale = clip_scale(norm, max_norm)
    if scale != 1.0:
        for g in grads.values():
            g *= g.dtype.type(scale)
    return norm


def decayed_learning_rate(base: float, decay: float, epoch: int) -> float:
    """``base / (1 + decay * epoch)``, the schedule of Lample et al. (2016) and Ma & Hovy (2016)."""
    return base / (1.0 + decay * epoch)


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """Base class: ``step(params, grads)`` updates ``params`` in place."""

    def __init__(self, learning_rate: float):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.learning_rate = float(learning_rate)
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             scale: float = 1.0) -> None:
        """Update ``params`` in place from ``grads`` multiplied by ``scale`` (the gradient
        clipping factor of :func:`clip_scale`; the gradients themselves are not modified)."""
        self.steps += 1
        for name in sorted(grads):
            self._update(name, params[name], grads[name], scale)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray, scale: float) -> None:
        raise NotImplementedError

    def _slot(self, key: str, like: np.ndarray) -> np.ndarray:
        slot = self.state.get(key)
        if slot is None:
            slot = self.state[key] = np.zeros(like.shape, like.dtype)
        elif slot.shape != like.shape or slot.dtype != like.dtype or \
                not slot.flags.c_contiguous or not slot.flags.writeable:
            # The update kernels write into the slot as if it were the parameter: a state from
            # elsewhere (a model file) must match it exactly.
            raise ValueError(f"optimizer state {key!r} has shape {slot.shape} and dtype "
                             f"{slot.dtype}; its parameter {like.shape} and {like.dtype}")
        return slot

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as arrays (including the step count)."""
        out = {f"slot.{k}": v for k, v in self.state.items()}
        out["steps"] = np.array(self.steps, dtype=np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""
        steps = np.asarray(state["steps"])
        if steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
            raise ValueError(f"the optimizer's step count must be a non-negative integer, got "
                             f"{steps!r}")
        self.steps = int(steps)
        self.state = {k[len("slot."):]: np.array(v, order="C") for k, v in state.items()
                      if k != "steps"}


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    Parameters
    ----------
    learning_rate : float
        Step size.
    momentum : float
        Momentum coefficient (0 disables it).
    nesterov : bool
        Use Nesterov momentum.
    weight_decay : float
        L2 penalty coefficient added to the gradient.
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay

    def _update(self, name, param, grad, scale):
        dtype = param.dtype.type
        g = grad * dtype(scale) if scale != 1.0 else grad
        g = g + dtype(self.weight_decay) * param if self.weight_decay else g
        if self.momentum:
            v = self._slot(name, param)
            v *= dtype(self.momentum)
            v += g
            g = g + dtype(self.momentum) * v if self.nesterov else v
        param -= dtype(self.learning_rate) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction.

    Parameters
    ----------
    learning_rate : float
        Step size.
    beta1, beta2 : float
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the denominator for stability.
    weight_decay : float
        L2 penalty coefficient added to the gradient.
    """

    def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(learning_rate)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay

    def kernel_scalars(self, scale: float, dtype) -> list:
        """The scalar arguments of the update kernels (``adam_update`` on either device) for
        this step, in ``dtype``: scale, weight decay, beta1, 1 - beta1, beta2, 1 - beta2, and
        the step size and epsilon with the bias corrections of step :attr:`steps`."""
        correction = math.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        lr_t = self.learning_rate * correction
        # eps scaled like the bias-corrected denominator, so this equals the paper's update.
        eps_t = self.eps * math.sqrt(1 - self.beta2**self.steps)
        cast = np.dtype(dtype).type
        return [cast(s) for s in (scale, self.weight_decay, self.beta1, 1 - self.beta1,
                                  self.beta2, 1 - self.beta2, lr_t, eps_t)]

    def _update(self, name, param, grad, scale):
        if param.dtype not in _KERNEL_DTYPES:
            raise TypeError(f"Adam updates float32 or float64 parameters, got {param.dtype} "
                            f"for {name!r}")
        if grad.shape != param.shape:
            raise ValueError(f"gradient of {name!r} has shape {grad.shape}, its parameter "
                             f"{param.shape}")
        m = self._slot("m." + name, param)
        v = self._slot("v." + name, param)
        scalars = self.kernel_scalars(scale, param.dtype)
        # One pass over contiguous memory; a parameter of another layout is updated in a copy.
        flat = param if param.flags.c_contiguous else np.ascontiguousarray(param)
        optim_cpu.adam_update(flat.reshape(-1),
                              np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
                              m.reshape(-1), v.reshape(-1), *scalars)
        if flat is not param:
            param[...] = flat


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, learning_rate: float, **options) -> Optimizer:
    """Build an optimizer by name (``"sgd"`` or ``"adam"``)."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}") \
            from None
    return cls(learning_rate, **options)
