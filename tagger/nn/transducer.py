"""The network of an encoder–decoder with attention (N→M): a bidirectional LSTM reads the source
symbols (with optional per-example categorical features), and an LSTM decoder writes the target
symbols one at a time, attending to the encoder states at every step (Luong, Pham & Manning 2015).

One decoder step, from the previous target symbol ``y`` and the previous attentional state
``a`` (zero before the first step; *input feeding*)::

    h, c  = LSTM([emb(y); a], (h, c))
    alpha = softmax_s(enc_s . (h W_att))             # over the source's valid steps
    ctx   = sum_s alpha_s enc_s
    a     = tanh([ctx; h] W_comb + b_comb)
    p(next symbol) = softmax(a W_out + b_out)

The encoder's outputs are (B, S, 2H): each direction's H states side by side. The decoder's
state H starts from the encoder's summary, ``h0 = tanh([fwd state after the last symbol; bwd
state after the first] W_init + b_init)``, ``c0 = 0``. Training reads the gold targets (teacher
forcing); the loss is the mean cross-entropy over the target symbols (the end symbol included).

Parameters are a plain dict of NumPy arrays, as for the other networks; this module runs on the
CPU kernels (:mod:`tagger.kernels.rnn_cpu` for the recurrences, :mod:`tagger.kernels.attention_cpu`
for the attention), and :mod:`tagger.nn.transducer_resident` is its twin on the GPU. The searches
(greedy, beam, teacher-forced scoring) are written once, over a decoder's three operations
(:class:`HostDecoder`): start from the sources, advance by one symbol, keep some rows.
"""

from __future__ import annotations

import numpy as np

from ..kernels import attention_cpu, ops_cpu
from . import init
from .recurrent import RNNStack, direction_backward, direction_forward, dropout_mask


class TransducerNetwork:
    """Encoder–decoder with attention over symbol ids.

    Parameters
    ----------
    source_size, target_size : int
        Source and target vocabulary sizes (ids ``0 .. size-1``).
    feature_sizes : sequence of int
        Vocabulary size of each per-example categorical feature (none by default).
    embedding_dim : int
        Width of the source and target symbol embeddings.
    feature_dim : int
        Width of each feature's embedding (appended to every source step's input).
    hidden_size : int
        H: the state of each encoder direction and of the decoder.
    num_layers : int
        Encoder layers.
    dropout : float
        Inverted-dropout rate on the encoder's input, between its layers and on the decoder's
        attentional state before the output layer, in training.
    """

    def __init__(self, source_size: int, target_size: int, feature_sizes=(),
                 embedding_dim: int = 64, feature_dim: int = 16, hidden_size: int = 128,
                 num_layers: int = 1, dropout: float = 0.0):
        sizes = [source_size, target_size, embedding_dim, hidden_size, num_layers,
                 *feature_sizes]
        if feature_sizes:
            sizes.append(feature_dim)
        if min(int(s) for s in sizes) < 1:
            raise ValueError("vocabulary sizes, widths and num_layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.source_size = int(source_size)
        self.target_size = int(target_size)
        self.feature_sizes = tuple(int(n) for n in feature_sizes)
        self.embedding_dim = int(embedding_dim)
        self.feature_dim = int(feature_dim)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.input_size = self.embedding_dim + len(self.feature_sizes) * self.feature_dim
        self.encoder = RNNStack("lstm", self.input_size, self.hidden_size, self.num_layers,
                                bidirectional=True, dropout=self.dropout, prefix="enc")

    # ----------------------------------------------------------------------------------------------
    # parameters

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter."""
        E, H = self.embedding_dim, self.hidden_size
        shapes = {"src.emb": (self.source_size, E)}
        for i, n in enumerate(self.feature_sizes):
            shapes[f"feat.{i}.emb"] = (n, self.feature_dim)
        shapes.update(self.encoder.param_shapes())
        shapes.update({
            "init.W": (2 * H, H), "init.b": (H,),
            "tgt.emb": (self.target_size, E),
            "dec.W": (E + H, 4 * H), "dec.U": (H, 4 * H), "dec.b": (4 * H,),
            "att.W": (H, 2 * H),
            "comb.W": (3 * H, H), "comb.b": (H,),
            "out.W": (H, self.target_size), "out.b": (self.target_size,),
        })
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters: embeddings of unit variance per component, recurrent layers as
        :func:`~tagger.nn.recurrent.init_direction`, Glorot elsewhere, zero biases (the
        decoder's forget gate at 1)."""
        from .recurrent import init_direction

        params = {}
        for name, shape in self.param_shapes().items():
            if name.endswith(".emb"):
                params[name] = init.uniform(rng, shape, np.sqrt(3.0), dtype)
            elif name.startswith("enc."):
                continue
            elif name.endswith(".b"):
                params[name] = np.zeros(shape, dtype)
            else:
                params[name] = init.glorot_uniform(rng, shape, dtype)
        params.update(self.encoder.init_params(rng, dtype))
        decoder = init_direction("lstm", self.embedding_dim + self.hidden_size,
                                 self.hidden_size, rng, dtype)
        for name, value in decoder.items():
            params[f"dec.{name}"] = value
        return {name: params[name] for name in self.param_shapes()}

    # ----------------------------------------------------------------------------------------------
    # encoder

    def _encode(self, params, src, src_lengths, features, rng, need_backward: bool):
        """Encoder states (B, S, 2H), the decoder's initial state and what the backward pass
        needs."""
        dtype = params["src.emb"].dtype
        B, S = src.shape
        E, H = self.embedding_dim, self.hidden_size
        ids = np.where(np.arange(S)[None, :] < src_lengths[:, None], src, -1)
        x = np.empty((B, S, E), dtype)
        ops_cpu.embedding_lookup(params["src.emb"], np.ascontiguousarray(ids), x)  # 0 at -1
        if self.feature_sizes:
            valid = (ids >= 0)[..., None]
            parts = [x]
            for i in range(len(self.feature_sizes)):
                rows = params[f"feat.{i}.emb"][features[:, i]]  # (B, F)
                parts.append(np.where(valid, rows[:, None, :], 0).astype(dtype))
            x = np.concatenate(parts, axis=2)
        mask = None
        if rng is not None and self.dropout > 0:
            mask = dropout_mask(rng, x.shape, self.dropout, dtype)
            x = x * mask
        enc, caches = self.encoder.forward(params, x, src_lengths, rng, need_backward)
        rows = np.arange(B)
        summary = np.concatenate([enc[rows, src_lengths - 1, :H], enc[:, 0, H:]], axis=1)
        h0 = np.tanh(summary @ params["init.W"] + params["init.b"])
        return enc, h0, (ids, mask, caches, summary, h0)

    # ----------------------------------------------------------------------------------------------
    # decoder

    def _dec_params(self, params: dict) -> dict:
        return {"W": params["dec.W"], "U": params["dec.U"], "b": params["dec.b"]}

    def _step(self, params, enc, src_lengths, y_prev, a_prev, h, c, need_backward: bool):
        """One decoder step for every row: the new (h, c), the attentional state and what the
        backward pass needs."""
        dtype = enc.dtype
        B = y_prev.shape[0]
        u = np.concatenate([params["tgt.emb"][y_prev], a_prev], axis=1)
        ones = np.ones(B, np.int64)
        _, h_new, c_new, cache = direction_forward("lstm", self._dec_params(params),
                                                   u[:, None, :], ones, h0=h, c0=c,
                                                   need_backward=need_backward)
        q = np.ascontiguousarray(h_new @ params["att.W"], dtype)
        alpha = np.empty(enc.shape[:2], dtype)
        ctx = np.empty((B, enc.shape[2]), dtype)
        attention_cpu.attention_forward(enc, src_lengths, q, alpha, ctx)
        joined = np.concatenate([ctx, h_new], axis=1)
        a = np.tanh(joined @ params["comb.W"] + params["comb.b"])
        return h_new, c_new, a, (u, cache, h_new, q, alpha, joined, a)

    # ----------------------------------------------------------------------------------------------
    # training

    def loss_and_grads(self, params: dict, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                       features=None, rng: np.random.Generator | None = None):
        """Mean cross-entropy of the target symbols under teacher forcing, and its gradients.

        Parameters
        ----------
        params : dict
        src : ndarray (B, S) of int
            Source ids, right-padded (padding ids are never read).
        src_lengths : ndarray (B,) of int
            Valid source steps, each at least 1.
        tgt_in, tgt_out : ndarray (B, T) of int
            The decoder's inputs (the start symbol, then the target) and the symbols it must
            write (the target, then the end symbol).
        tgt_lengths : ndarray (B,) of int
            Valid target steps, each at least 1.
        features : ndarray (B, n_features) of int, optional
            Per-example feature ids.
        rng : numpy.random.Generator, optional
            Given during training: draws the dropout masks.

        Returns
        -------
        loss : float
            Mean over the B * valid target symbols, in nats.
        grads : dict
            Gradients with the keys of ``params``.
        """
        src, src_lengths, tgt_in, tgt_out, tgt_lengths, features = self._check(
            src, src_lengths, tgt_in, tgt_out, tgt_lengths, features)
        dtype = params["src.emb"].dtype
        B, T = tgt_in.shape
        H = self.hidden_size
        enc, h, (ids, in_mask, enc_caches, summary, h0) = self._encode(
            params, src, src_lengths, features, rng, True)
        c = np.zeros((B, H), dtype)
        a = np.zeros((B, H), dtype)
        valid = np.arange(T)[None, :] < tgt_lengths[:, None]
        n = int(valid.sum())
        total = 0.0
        steps = []
        for t in range(T):
            h, c, a, saved = self._step(params, enc, src_lengths, tgt_in[:, t], a, h, c, True)
            out_mask = None
            if rng is not None and self.dropout > 0:
                out_mask = dropout_mask(rng, a.shape, self.dropout, dtype)
                a_out = a * out_mask
            else:
                a_out = a
            logits = a_out @ params["out.W"] + params["out.b"]
            logp = logits - logits.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            rows = np.arange(B)
            w = valid[:, t]
            total += float(logp[rows, tgt_out[:, t]][w].sum(dtype=np.float64))
            d_logits = np.exp(logp)
            d_logits[rows, tgt_out[:, t]] -= 1
            d_logits *= (w / n).astype(dtype)[:, None]
            steps.append((saved, out_mask, a_out, d_logits))
        grads = {name: np.zeros_like(value) for name, value in params.items()}
        d_enc = np.zeros_like(enc)
        d_h = np.zeros((B, H), dtype)
        d_c = np.zeros((B, H), dtype)
        d_a_next = np.zeros((B, H), dtype)
        d_q = np.empty((B, 2 * H), dtype)
        E = self.embedding_dim
        for t in range(T - 1, -1, -1):
            (u, cache, h_t, q, alpha, joined, a_t), out_mask, a_out, d_logits = steps[t]
            grads["out.W"] += a_out.T @ d_logits
            grads["out.b"] += d_logits.sum(axis=0)
            d_a = d_logits @ params["out.W"].T
            if out_mask is not None:
                d_a *= out_mask
            d_a += d_a_next
            d_pre = d_a * (1 - a_t * a_t)
            grads["comb.W"] += joined.T @ d_pre
            grads["comb.b"] += d_pre.sum(axis=0)
            d_joined = d_pre @ params["comb.W"].T
            d_ctx = np.ascontiguousarray(d_joined[:, :2 * H])
            attention_cpu.attention_backward(enc, src_lengths, q, alpha, d_ctx, d_enc, d_q)
            d_h_out = d_joined[:, 2 * H:] + d_q @ params["att.W"].T
            grads["att.W"] += h_t.T @ d_q
            du, g, dh0, dc0 = direction_backward(self._dec_params(params), cache,
                                                 np.ascontiguousarray(d_h_out[:, None, :]),
                                                 d_h_last=d_h, d_c_last=d_c)
            for name, value in g.items():
                grads[f"dec.{name}"] += value
            du = du[:, 0, :]
            np.add.at(grads["tgt.emb"], tgt_in[:, t], du[:, :E])
            d_a_next = np.ascontiguousarray(du[:, E:])
            d_h, d_c = dh0, dc0
        # The decoder's initial state came from the encoder's summary (c0 is a constant).
        d_init = d_h * (1 - h0 * h0)
        grads["init.W"] += summary.T @ d_init
        grads["init.b"] += d_init.sum(axis=0)
        d_summary = d_init @ params["init.W"].T
        rows = np.arange(B)
        d_enc[rows, src_lengths - 1, :H] += d_summary[:, :H]
        d_enc[:, 0, H:] += d_summary[:, H:]
        dx, enc_grads = self.encoder.backward(params, enc_caches, d_enc)
        for name, value in enc_grads.items():
            grads[name] += value
        if in_mask is not None:
            dx = dx * in_mask
        d_table = np.empty_like(params["src.emb"])
        ops_cpu.embedding_backward(ids, np.ascontiguousarray(dx[:, :, :E]), d_table)
        grads["src.emb"] += d_table
        F = self.feature_dim
        for i in range(len(self.feature_sizes)):
            per_row = dx[:, :, E + i * F:E + (i + 1) * F].sum(axis=1)  # padding holds zeros
            np.add.at(grads[f"feat.{i}.emb"], features[:, i], per_row)
        return -total / n, grads

    # ----------------------------------------------------------------------------------------------
    # prediction

    def encode(self, params: dict, src, src_lengths, features=None):
        """The encoder states and the decoder's initial state of a batch, for decoding."""
        src, src_lengths, features = self._check(src, src_lengths, features=features)
        enc, h0, _ = self._encode(params, src, src_lengths, features, None, False)
        return enc, src_lengths, h0

    def _next(self, params, enc, src_lengths, y_prev, a, h, c):
        """One decoder step without dropout: log-probabilities of the next symbol (B, V) in
        float64 and the new (a, h, c)."""
        h, c, a, _ = self._step(params, enc, src_lengths, y_prev, a, h, c, False)
        return log_softmax64(a @ params["out.W"] + params["out.b"]), a, h, c

    def log_likelihood(self, params: dict, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                       features=None) -> np.ndarray:
        """Log-probability (natural log, float64) of each row's target under teacher forcing:
        the sum over its valid target symbols."""
        src, src_lengths, tgt_in, tgt_out, tgt_lengths, features = self._check(
            src, src_lengths, tgt_in, tgt_out, tgt_lengths, features)
        return forced_log_likelihood(HostDecoder(self, params), src, src_lengths, tgt_in,
                                     tgt_out, tgt_lengths, features)

    def greedy(self, params: dict, src, src_lengths, bos: int, eos: int, max_length: int,
               features=None) -> list[list[int]]:
        """The most probable symbol at every step, for every row at once, until each row has
        written ``eos`` or ``max_length`` symbols (``eos`` not included in the result)."""
        return greedy_search(HostDecoder(self, params), src, src_lengths, bos, eos, max_length,
                             features)

    def beam_search(self, params: dict, src, src_length: int, bos: int, eos: int,
                    max_length: int, beam_size: int = 5, length_penalty: float = 0.0,
                    features=None, n_best: int = 1) -> list[tuple[list[int], float, bool]]:
        """Beam search for one source (``src`` (S,) ids): see :func:`beam_search`."""
        return beam_search(HostDecoder(self, params), src, src_length, bos, eos, max_length,
                           beam_size, length_penalty, features, n_best)

    def beam_search_batch(self, params: dict, src, src_lengths, bos: int, eos: int,
                          max_length: int, beam_size: int = 5, length_penalty: float = 0.0,
                          features=None, n_best: int = 1):
        """Beam search for every source of a batch at once: see :func:`beam_search_batch`."""
        return beam_search_batch(HostDecoder(self, params), src, src_lengths, bos, eos,
                                 max_length, beam_size, length_penalty, features, n_best)

    # ----------------------------------------------------------------------------------------------
    # checks

    def _check(self, src, src_lengths, tgt_in=None, tgt_out=None, tgt_lengths=None,
               features=None):
        src = _int_array(src, "src", 2)
        B, S = src.shape
        src_lengths = _int_array(src_lengths, "src_lengths", 1)
        if src_lengths.shape != (B,) or (src_lengths < 1).any() or (src_lengths > S).any():
            raise ValueError(f"src_lengths must be {B} integers in [1, {S}]")
        valid = np.arange(S)[None, :] < src_lengths[:, None]
        _check_ids(src[valid], self.source_size, "src")
        if self.feature_sizes:
            features = _int_array(features, "features", 2)
            if features.shape != (B, len(self.feature_sizes)):
                raise ValueError(f"features must have shape {(B, len(self.feature_sizes))}, "
                                 f"got {features.shape}")
            for i, n in enumerate(self.feature_sizes):
                _check_ids(features[:, i], n, f"feature {i}")
        elif features is not None and np.size(features):
            raise ValueError("this network has no features")
        if tgt_in is None:
            return src, src_lengths, features
        tgt_in = _int_array(tgt_in, "tgt_in", 2)
        tgt_out = _int_array(tgt_out, "tgt_out", 2)
        if tgt_in.shape[0] != B or tgt_out.shape != tgt_in.shape:
            raise ValueError(f"tgt_in and tgt_out must both have shape ({B}, T)")
        T = tgt_in.shape[1]
        tgt_lengths = _int_array(tgt_lengths, "tgt_lengths", 1)
        if tgt_lengths.shape != (B,) or (tgt_lengths < 1).any() or (tgt_lengths > T).any():
            raise ValueError(f"tgt_lengths must be {B} integers in [1, {T}]")
        _check_ids(tgt_in, self.target_size, "tgt_in")
        _check_ids(tgt_out, self.target_size, "tgt_out")
        return src, src_lengths, tgt_in, tgt_out, tgt_lengths, features


# --------------------------------------------------------------------------------------------------
# decoding, on either device
# --------------------------------------------------------------------------------------------------


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """Log-softmax of each row of host ``logits`` (B, V), in float64."""
    out = np.asarray(logits).astype(np.float64)
    out -= out.max(axis=1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


class HostDecoder:
    """Decoder steps on the CPU, in the form the searches below take (the GPU's is
    :class:`tagger.nn.transducer_resident.DeviceDecoder`).

    A decoding state is the tuple ``(enc, src_lengths, a, h, c)`` of a batch: the encoder
    states, the valid source steps, the attentional state and the decoder's LSTM state.
    """

    def __init__(self, network: TransducerNetwork, params: dict):
        self.network = network
        self.params = params

    def start(self, src, src_lengths, features=None) -> tuple:
        """The state before the first step (checks the sources)."""
        enc, src_lengths, h = self.network.encode(self.params, src, src_lengths, features)
        B, H = enc.shape[0], self.network.hidden_size
        return (enc, src_lengths, np.zeros((B, H), enc.dtype), h, np.zeros((B, H), enc.dtype))

    def advance(self, state: tuple, y) -> tuple[np.ndarray, tuple]:
        """Read the symbols ``y`` (B,): the log-probabilities of the next ones (B, V) in float64
        and the new state."""
        enc, lengths, a, h, c = state
        logp, a, h, c = self.network._next(self.params, enc, lengths,
                                           np.asarray(y, np.int64), a, h, c)
        return logp, (enc, lengths, a, h, c)

    def take(self, state: tuple, rows: np.ndarray) -> tuple:
        """The state of the rows ``rows`` (indices, repeats allowed), in that order."""
        return tuple(part[rows] for part in state)


def forced_log_likelihood(decoder, src, src_lengths, tgt_in, tgt_out, tgt_lengths,
                          features=None) -> np.ndarray:
    """:meth:`TransducerNetwork.log_likelihood` on ``decoder`` (checked arrays): rows leave the
    batch once their target is read."""
    state = decoder.start(src, src_lengths, features)
    B, T = tgt_in.shape
    total = np.zeros(B)
    live = np.arange(B)
    for t in range(T):
        going = t < tgt_lengths[live]
        if not going.all():
            if not going.any():
                break
            keep = np.flatnonzero(going)
            live, state = live[keep], decoder.take(state, keep)
        logp, state = decoder.advance(state, tgt_in[live, t])
        total[live] += logp[np.arange(live.size), tgt_out[live, t]]
    return total


def greedy_search(decoder, src, src_lengths, bos: int, eos: int, max_length: int,
                  features=None) -> list[list[int]]:
    """The most probable symbol at every step, for every row at once, until each row has
    written ``eos`` or ``max_length`` symbols (``eos`` not included); finished rows leave the
    batch."""
    state = decoder.start(src, src_lengths, features)
    B = len(src_lengths)
    y = np.full(B, bos, np.int64)
    out: list[list[int]] = [[] for _ in range(B)]
    live = np.arange(B)  # the rows still writing
    for step in range(max_length):
        logp, state = decoder.advance(state, y)
        _mask_reserved(logp, bos, eos, step)
        y = logp.argmax(axis=1)
        going = y != eos
        for b, symbol in zip(live[going].tolist(), y[going].tolist(), strict=True):
            out[b].append(symbol)
        if not going.all():
            if not going.any():
                break
            keep = np.flatnonzero(going)
            live, y, state = live[keep], y[keep], decoder.take(state, keep)
    return out


def beam_search(decoder, src, src_length: int, bos: int, eos: int, max_length: int,
                beam_size: int = 5, length_penalty: float = 0.0, features=None,
                n_best: int = 1) -> list[tuple[list[int], float, bool]]:
    """:func:`beam_search_batch` for one source (``src`` (S,) ids)."""
    return beam_search_batch(decoder, np.asarray(src)[None, :], [src_length], bos, eos,
                             max_length, beam_size, length_penalty,
                             None if features is None else np.asarray(features)[None, :],
                             n_best)[0]


def beam_search_batch(decoder, src, src_lengths, bos: int, eos: int, max_length: int,
                      beam_size: int = 5, length_penalty: float = 0.0, features=None,
                      n_best: int = 1) -> list[list[tuple[list[int], float, bool]]]:
    """Beam search for every source of a batch at once, on ``decoder``.

    For each source, every step extends each of its live hypotheses by every symbol and keeps
    the ``beam_size`` best extensions by total log-probability (ties to the earlier hypothesis,
    then the lower symbol); one that ends with ``eos`` is finished. A source's search stops when
    ``beam_size`` of its hypotheses are finished, or after ``max_length`` steps. Finished
    hypotheses are ranked by ``log p / length ** length_penalty`` (the length counts ``eos``;
    0 ranks by log-probability alone). The live hypotheses of all the sources still searching
    are the rows of one decoder batch, so each step is one pass of the network.

    Returns
    -------
    list, per source, of lists of (symbols, score, finished)
        The ``n_best`` best, best first: symbols without ``eos``, the ranking score, and whether
        the hypothesis ended with ``eos`` (False only when none did within ``max_length`` steps:
        the best live ones are returned then).
    """
    state = decoder.start(src, src_lengths, features)
    B = len(src_lengths)
    # A hypothesis of n symbols is a node of the tree of all of them, numbered within the
    # nodes its step made: its last symbol (``last[n - 1]``) and the node of step n - 1 it
    # extends (``parents[n - 1]``; -1 the empty start). Extending one costs O(1), not a copy of
    # its symbols, and a step's nodes are two int32 arrays.
    parents: list[np.ndarray] = []
    last: list[np.ndarray] = []
    live: list[list[tuple[int, float]]] = [[(-1, 0.0)] for _ in range(B)]
    finished: list[list[tuple[int, float, int]]] = [[] for _ in range(B)]  # node, score, length
    lengths = [0] * B  # the symbols of each source's live hypotheses
    active = list(range(B))  # the sources still searching, their rows in this order
    y = np.full(B, bos, np.int64)
    for step in range(max_length):
        logp, state = decoder.advance(state, y)
        _mask_reserved(logp, bos, eos, step)
        V = logp.shape[1]
        rows, symbols, still, step_parents, step_last = [], [], [], [], []
        first = 0
        for b in active:
            hyps = live[b]
            m = len(hyps)
            totals = np.array([score for _, score in hyps])[:, None] + logp[first:first + m]
            flat = totals.ravel()
            k = min(beam_size, flat.size)
            best = np.argpartition(-flat, k - 1)[:k]
            best = best[np.lexsort((best, -flat[best]))]  # by score, ties to lower index
            new_live, keep_rows, keep_symbols = [], [], []
            for index in best.tolist():
                row, symbol = divmod(index, V)
                score = float(flat[index])
                if score == -np.inf:  # a masked symbol: fewer extensions than the beam
                    break
                if symbol == eos:
                    finished[b].append((hyps[row][0], score, step))
                else:
                    new_live.append((len(step_parents), score))
                    step_parents.append(hyps[row][0])
                    step_last.append(symbol)
                    keep_rows.append(first + row)
                    keep_symbols.append(symbol)
            first += m
            if len(finished[b]) >= beam_size or not new_live:
                continue  # done: its finished hypotheses are its answer
            live[b] = new_live
            lengths[b] = step + 1
            rows += keep_rows
            symbols += keep_symbols
            still.append(b)
        parents.append(np.array(step_parents, np.int32))
        last.append(np.array(step_last, np.int32))
        active = still
        if not active:
            break
        state = decoder.take(state, np.array(rows, np.int64))
        y = np.array(symbols, np.int64)

    def spelled(node: int, length: int) -> list[int]:
        out = [0] * length
        for n in range(length - 1, -1, -1):
            out[n] = int(last[n][node])
            node = int(parents[n][node])
        return out

    out = []
    for b in range(B):
        if finished[b]:
            ranked = sorted(((node, length, score / (length + 1) ** length_penalty, True)
                             for node, score, length in finished[b]), key=lambda r: -r[2])
        else:
            ranked = sorted(((node, lengths[b], score / max(lengths[b], 1) ** length_penalty,
                              False) for node, score in live[b]), key=lambda r: -r[2])
        # Only the hypotheses returned are spelled out.
        out.append([(spelled(node, length), score, done)
                    for node, length, score, done in ranked[:n_best]])
    return out


def _mask_reserved(logp: np.ndarray, bos: int, eos: int, step: int) -> None:
    """Rule out, in place, what no output may hold: the start symbol (also the padding) at
    any step, and the end symbol at the first, since no target is empty."""
    logp[:, bos] = -np.inf
    if step == 0:
        logp[:, eos] = -np.inf


def _int_array(a, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a {ndim}-d integer array, got shape {a.shape} and "
                         f"dtype {a.dtype}")
    return np.ascontiguousarray(a, np.int64)


def _check_ids(ids: np.ndarray, size: int, name: str) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise ValueError(f"{name} holds ids in [{int(ids.min())}, {int(ids.max())}]; the "
                         f"vocabulary has ids 0 to {size - 1}")
