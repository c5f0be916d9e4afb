"""Output layers: a linear projection to tag scores, and the two heads that turn scores into a loss
and predictions — per-token softmax cross-entropy and the linear-chain CRF.

Losses are averaged over the sequences of a batch.
"""

from __future__ import annotations

import numpy as np

from ..kernels import backend


def padding_mask(lengths: np.ndarray, T: int) -> np.ndarray:
    """Boolean (B, T) array, True at valid positions."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ W + b`` over the last axis of a (B, T, F) array."""
    B, T, F = x.shape
    return (x.reshape(B * T, F) @ W + b).reshape(B, T, W.shape[1])


def linear_backward(x: np.ndarray, W: np.ndarray, d_out: np.ndarray):
    """Gradients of :func:`linear_forward`: ``(dx, dW, db)``."""
    B, T, F = x.shape
    d2 = d_out.reshape(B * T, W.shape[1])
    return (d2 @ W.T).reshape(B, T, F), x.reshape(B * T, F).T @ d2, d2.sum(axis=0)


class SoftmaxHead:
    """Independent softmax over tags at every position, with cross-entropy loss."""

    def param_shapes(self, num_tags: int) -> dict[str, tuple]:
        return {}

    def init_params(self, num_tags: int, rng, dtype=np.float32) -> dict[str, np.ndarray]:
        return {}

    @staticmethod
    def _log_softmax(scores: np.ndarray) -> np.ndarray:
        shifted = scores - scores.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    def loss(self, params, scores, tags, lengths):
        """Mean over sequences of the summed token cross-entropy.

        Returns
        -------
        loss : float
        d_scores : ndarray (B, T, K)
            Gradient with respect to ``scores`` (zero at padding).
        grads : dict
            Empty: the head has no parameters.
        """
        B, T, _ = scores.shape
        mask = padding_mask(lengths, T)
        logp = self._log_softmax(scores)
        safe_tags = np.where(mask, tags, 0)
        picked = np.take_along_axis(logp, safe_tags[..., None], axis=-1)[..., 0]
        loss = -float(picked[mask].astype(np.float64).sum()) / max(B, 1)
        d = np.exp(logp)
        np.put_along_axis(d, safe_tags[..., None],
                          np.take_along_axis(d, safe_tags[..., None], -1) - 1, axis=-1)
        d *= mask[..., None] / scores.dtype.type(max(B, 1))
        return loss, d.astype(scores.dtype, copy=False), {}

    def decode(self, params, scores, lengths):
        """Most probable tag per position, -1 at padding."""
        tags = scores.argmax(axis=-1)
        tags[~padding_mask(lengths, scores.shape[1])] = -1
        return tags

    def marginals(self, params, scores, lengths):
        """Per-position tag probabilities, zero at padding."""
        p = np.exp(self._log_softmax(scores))
        p *= padding_mask(lengths, scores.shape[1])[..., None]
        return p


class CRFHead:
    """Linear-chain CRF: learned start, end and transition scores over the emission scores.

    Parameters
    ----------
    allowed_start, allowed_end : ndarray (K,) of bool, optional
        Tags a sequence may start or end with (all when omitted).
    allowed_trans : ndarray (K, K) of bool, optional
        ``allowed_trans[i, j]`` says whether tag ``j`` may follow tag ``i`` (all when omitted).
    """

    def __init__(self, allowed_start=None, allowed_end=None, allowed_trans=None):
        self.allowed_start = allowed_start
        self.allowed_end = allowed_end
        self.allowed_trans = allowed_trans
        self.device = "cpu"  # or "cuda": which kernels run the CRF

    @property
    def _kernels(self):
        return backend.kernels(self.device, "crf")

    def _kernel(self, name: str):
        """The kernel ``name`` of this head's device; on the CPU its serial twin.

        The engine's CPU parallelism is Python threads running kernels that release the GIL
        (the two directions of a layer, whole prediction batches), never Numba's own thread
        pool: after a parallel kernel, OpenMP's workers keep spinning for a while, and on two
        cores they took the second core from the direction thread. Training the whole tagger on
        two threads ran at 34k tokens/s with the parallel CRF loss, the same as one thread, and
        at 42k-54k with OpenMP's workers made to sleep (``OMP_WAIT_POLICY=passive``). A CRF
        over a batch is small beside the recurrent layers, so one thread loses little on it.
        Serial kernels can also be called from several threads at once under every threading
        layer (the workqueue layer aborts on concurrent parallel launches).
        """
        if self.device == "cpu":
            name += "_serial"
        return getattr(self._kernels, name)

    def _masks(self, K: int):
        s = np.ones(K, bool) if self.allowed_start is None else np.asarray(self.allowed_start, bool)
        e = np.ones(K, bool) if self.allowed_end is None else np.asarray(self.allowed_end, bool)
        t = (np.ones((K, K), bool) if self.allowed_trans is None
             else np.asarray(self.allowed_trans, bool))
        if s.shape != (K,) or e.shape != (K,) or t.shape != (K, K):
            raise ValueError(f"transition masks do not match {K} tags")
        return s, e, np.ascontiguousarray(t)

    def param_shapes(self, num_tags: int) -> dict[str, tuple]:
        return {"crf.start": (num_tags,), "crf.end": (num_tags,),
                "crf.trans": (num_tags, num_tags)}

    def init_params(self, num_tags: int, rng, dtype=np.float32) -> dict[str, np.ndarray]:
        return {"crf.start": np.zeros(num_tags, dtype), "crf.end": np.zeros(num_tags, dtype),
                "crf.trans": np.zeros((num_tags, num_tags), dtype)}

    def loss(self, params, scores, tags, lengths):
        """Mean over sequences of the CRF negative log-likelihood, and its gradients."""
        B, T, K = scores.shape
        s, e, t = self._masks(K)
        nll = np.empty(B, scores.dtype)
        d_scores = np.empty_like(scores)
        names = ("crf.start", "crf.end", "crf.trans")
        grads = {name: np.empty_like(params[name]) for name in names}
        nll_kernel = self._kernel("crf_nll")
        nll_kernel(scores, np.ascontiguousarray(tags, np.int64), lengths, params["crf.start"],
                   params["crf.end"], params["crf.trans"], s, e, t, nll, d_scores,
                   grads["crf.start"], grads["crf.end"], grads["crf.trans"])
        scale = scores.dtype.type(1.0 / max(B, 1))
        d_scores *= scale
        for g in grads.values():
            g *= scale
        return float(nll.astype(np.float64).sum()) / max(B, 1), d_scores, grads

    def decode(self, params, scores, lengths):
        """Viterbi: the best tag sequence per sentence, -1 at padding."""
        B, T, K = scores.shape
        s, e, t = self._masks(K)
        tags = np.empty((B, T), np.int64)
        best = np.empty(B, scores.dtype)
        decode = self._kernel("viterbi_decode")
        decode(scores, lengths, params["crf.start"], params["crf.end"], params["crf.trans"], s, e,
               t, tags, best)
        return tags

    def marginals(self, params, scores, lengths):
        """Per-position tag marginals (forward–backward), zero at padding."""
        B, T, K = scores.shape
        s, e, t = self._masks(K)
        out = np.empty_like(scores)
        log_z = np.empty(B, scores.dtype)
        marginals = self._kernel("crf_marginals")
        marginals(scores, lengths, params["crf.start"], params["crf.end"], params["crf.trans"], s,
                  e, t, out, log_z)
        return out
