"""The network of a character language model: embedding → stacked unidirectional LSTM/GRU →
linear → softmax over the next character, trained by truncated backpropagation through time.

A long text is read as B parallel streams cut into segments of T characters. Each call takes
one segment and the recurrent state that the previous segment ended with, and returns the state
this one ends with: the forward computation runs on across segments as if the stream were read
in one piece, while the gradient stops at the segment's start (the carried state is a constant
of the call). Parameters are plain dicts of NumPy arrays, as for
:class:`~tagger.nn.network.TaggingNetwork`; everything runs on the CPU kernels.
"""

from __future__ import annotations

import numba
import numpy as np

from ..kernels import ops_cpu, rnn_cpu
from ..kernels.gemm_cpu import MR
from . import init
from .heads import linear_backward, linear_forward
from .recurrent import (
    Workspace,
    check_cell,
    direction_backward,
    direction_forward,
    direction_shapes,
    dropout_mask,
    init_direction,
)
from .training import thread_pool

LM_CELLS = ("lstm", "gru")

# One entry per layer: the final hidden state (B, H) and, for the LSTM, the cell state (B, H).
State = list[tuple[np.ndarray, np.ndarray | None]]


class CharLMNetwork:
    """A unidirectional recurrent language model over character ids.

    Parameters
    ----------
    vocab_size : int
        Number of characters V (ids ``0 .. V-1``).
    embedding_dim : int
        Width E of the character embeddings.
    cell : {"lstm", "gru"}
        Recurrent cell of every layer.
    hidden_size : int
        State width H of every layer.
    num_layers : int
        Stacked recurrent layers.
    dropout : float
        Inverted-dropout rate, during training, on the embedding table (one mask per segment:
        a dropped component of a character's embedding is dropped wherever that character
        occurs in the segment, Gal and Ghahramani 2016), on the input of every further layer
        and on the last layer's output; never on the recurrent connections, so the carried
        state is the same in training and evaluation (Zaremba et al. 2014). With the table
        masked rather than each position's copy, an LSTM's first layer takes its input
        projections from ``masked table @ W`` (V x 4H per segment), gathered, instead of a
        product per character: at the default sizes a ninth of the work of a step.
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 64, cell: str = "lstm",
                 hidden_size: int = 256, num_layers: int = 1, dropout: float = 0.0):
        if check_cell(cell) not in LM_CELLS:
            raise ValueError(f"the character language model supports the cells "
                             f"{', '.join(LM_CELLS)}; got {cell!r}")
        if min(vocab_size, embedding_dim, hidden_size, num_layers) < 1:
            raise ValueError("vocab_size, embedding_dim, hidden_size and num_layers must be "
                             "positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)
        self.cell = cell
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        # Where the forward caches of training steps come from; the backward pass hands them
        # back, so that successive segments reuse the same memory (see Workspace).
        self.workspace = Workspace()

    # ----------------------------------------------------------------------------------------------
    # Parameters and state

    def _key(self, layer: int) -> str:
        return f"rnn.{layer}.fwd."

    def _layer_params(self, params: dict, layer: int) -> dict:
        key = self._key(layer)
        return {name[len(key):]: value for name, value in params.items() if name.startswith(key)}

    def _input_size(self, layer: int) -> int:
        return self.embedding_dim if layer == 0 else self.hidden_size

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order."""
        shapes = {"emb.char": (self.vocab_size, self.embedding_dim)}
        for layer in range(self.num_layers):
            for name, shape in direction_shapes(self.cell, self._input_size(layer),
                                                self.hidden_size).items():
                shapes[self._key(layer) + name] = shape
        shapes["out.W"] = (self.hidden_size, self.vocab_size)
        shapes["out.b"] = (self.vocab_size,)
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters: embeddings uniform in ±sqrt(3) (unit variance per component),
        recurrent layers as :func:`~tagger.nn.recurrent.init_direction`, Glorot output weights
        and zero output biases.

        The embeddings are the recurrent layer's only input, and they start as large as PyTorch's
        N(0, 1): with unit variance per vector instead (components of variance 1/E), the input
        projections started about 8 times weaker than the recurrent ones, and early in training
        the model read text from the zero state far worse than the loss of its carried training
        state suggested (tiny-shakespeare after 200 steps: dev 3.78 nats per character at a
        training loss of 2.04, against 1.82 with these embeddings).
        """
        params = {"emb.char": init.uniform(rng, (self.vocab_size, self.embedding_dim),
                                           np.sqrt(3.0), dtype)}
        for layer in range(self.num_layers):
            for name, value in init_direction(self.cell, self._input_size(layer),
                                              self.hidden_size, rng, dtype).items():
                params[self._key(layer) + name] = value
        params["out.W"] = init.glorot_uniform(rng, (self.hidden_size, self.vocab_size), dtype)
        params["out.b"] = np.zeros(self.vocab_size, dtype)
        return params

    def initial_state(self, batch: int, dtype=np.float32) -> State:
        """Zero state for ``batch`` streams: one ``(h, c)`` pair per layer, ``c`` None for the
        GRU."""
        H = self.hidden_size
        lstm = self.cell == "lstm"
        return [(np.zeros((batch, H), dtype), np.zeros((batch, H), dtype) if lstm else None)
                for _ in range(self.num_layers)]

    # ----------------------------------------------------------------------------------------------
    # Checks

    def _ids(self, ids, name: str, ndim: int = 2) -> np.ndarray:
        """``ids`` as a C-contiguous int64 array, after checking its shape and range (the
        lookup kernels index the table without bounds checks)."""
        a = np.asarray(ids)
        if a.ndim != ndim or a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a {ndim}-d array of integer character ids, got "
                             f"shape {a.shape} and dtype {a.dtype}")
        if a.size == 0:
            raise ValueError(f"{name} is empty: need at least one stream and one step")
        low, high = int(a.min()), int(a.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(f"{name} holds character ids in [{low}, {high}]; the vocabulary "
                             f"has ids 0 to {self.vocab_size - 1}")
        return np.ascontiguousarray(a, np.int64)

    def _state(self, state, batch: int, dtype) -> State:
        """``state`` checked against the network and ``batch`` (zeros when None), in
        ``dtype``."""
        if state is None:
            return self.initial_state(batch, dtype)
        if len(state) != self.num_layers:
            raise ValueError(f"state has {len(state)} layers, the network {self.num_layers}")
        shape = (batch, self.hidden_size)
        checked = []
        for layer, (h, c) in enumerate(state):
            if np.shape(h) != shape:
                raise ValueError(f"state of layer {layer}: h has shape {np.shape(h)}, expected "
                                 f"{shape}")
            if self.cell == "lstm":
                if c is None or np.shape(c) != shape:
                    raise ValueError(f"state of layer {layer}: the LSTM needs c of shape "
                                     f"{shape}, got {None if c is None else np.shape(c)}")
                c = np.ascontiguousarray(c, dtype)
            elif c is not None:
                raise ValueError(f"state of layer {layer}: the GRU has no cell state (c must be "
                                 f"None)")
            checked.append((np.ascontiguousarray(h, dtype), c))
        return checked

    # ----------------------------------------------------------------------------------------------
    # Forward and backward

    def _forward(self, params: dict, ids: np.ndarray, state: State,
                 rng: np.random.Generator | None, need_backward: bool,
                 lengths: np.ndarray | None = None, masks=None):
        """Embeddings and recurrent layers over one segment.

        ``lengths`` (B,), when given, says how many steps of each row to read (right-padded
        rows of several texts): outputs past a row's length are zero and its state is the one
        after its last step. Training segments have none (every row is read whole).
        ``masks``, when given, are the dropout masks (:meth:`_draw_masks`) instead of draws
        from ``rng``.

        Returns the top layer's outputs (B, T, H) after output dropout, the new state, and what
        the backward pass needs (the input mask and cache of every layer, the output mask, the
        embedding table as masked, and whether the first layer gathered its projections).
        """
        table = params["emb.char"]
        dtype = table.dtype
        B, T = ids.shape
        lengths = np.full(B, T, np.int64) if lengths is None else lengths
        if masks is None:
            masks = self._draw_masks(rng, B, T, dtype)
        layer_masks, out_mask = masks if masks is not None else (None, None)
        if layer_masks is not None:
            table = table * layer_masks[0]
        layers, new_state = [], []
        first = self._layer_params(params, 0)
        if need_backward and self.cell == "lstm":
            # The first layer's input projections are rows of table @ W, gathered.
            x = np.empty((B, T, 0), dtype)
            gather = (table @ first["W"], ids)
            first = dict(first, W=np.empty((0, first["W"].shape[1]), dtype))
        else:
            x = np.empty((B, T, self.embedding_dim), dtype)
            ops_cpu.embedding_lookup(np.ascontiguousarray(table), ids, x)
            gather = None
        for layer in range(self.num_layers):
            mask = None
            if layer_masks is not None and layer > 0:
                mask = layer_masks[layer]
                x = x * mask
            h0, c0 = state[layer]
            x, h_last, c_last, cache = direction_forward(
                self.cell, first if layer == 0 else self._layer_params(params, layer), x,
                lengths, reverse=False, h0=h0, c0=c0, need_backward=need_backward,
                workspace=self.workspace if need_backward else None,
                gather=gather if layer == 0 else None)
            layers.append((mask, cache))
            # h_last and c_last are new arrays that no cache refers to: the caller may keep them.
            new_state.append((h_last, c_last))
        if out_mask is not None:
            x = x * out_mask
        return x, new_state, (layers, out_mask, table, gather is not None)

    def _draw_masks(self, rng: np.random.Generator | None, B: int, T: int, dtype):
        """The dropout masks of a training segment, in the order of their draws: one on the
        embedding table (V, E), one on the input of every further layer, then one on the top
        layer's output (None without dropout)."""
        if rng is None or self.dropout <= 0:
            return None
        layer_masks = [dropout_mask(rng, (self.vocab_size, self.embedding_dim), self.dropout,
                                    dtype)]
        layer_masks += [dropout_mask(rng, (B, T, self._input_size(layer)), self.dropout, dtype)
                        for layer in range(1, self.num_layers)]
        return layer_masks, dropout_mask(rng, (B, T, self.hidden_size), self.dropout, dtype)

    def read(self, params: dict, ids, lengths) -> np.ndarray:
        """The top layer's outputs (B, T, H) over right-padded rows of character ids, each read
        from the zero state up to its length (zero past it), for prediction.

        An LSTM's first layer takes its input projections from ``emb.char @ W``, a (V, 4H)
        table made once per call, instead of multiplying every character's embedding: the
        same values up to float rounding, with a third less work per character at the default
        sizes of a feature model.
        """
        ids = self._ids(ids, "ids")
        B, T = ids.shape
        lengths = np.ascontiguousarray(lengths, np.int64)
        if lengths.shape != (B,) or (lengths < 0).any() or (lengths > T).any():
            raise ValueError(f"lengths must be {B} integers in [0, {T}]")
        if self.cell != "lstm":
            top, _, _ = self._forward(params, ids, self.initial_state(B, params["emb.char"].dtype),
                                      None, False, lengths=lengths)
            return top
        layer = self._layer_params(params, 0)
        dtype = layer["U"].dtype
        H = self.hidden_size
        projected = np.ascontiguousarray(params["emb.char"] @ layer["W"], dtype)
        h, c = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
        x = np.empty((B, T, H), dtype)
        rnn_cpu.lstm_infer_ids(ids, lengths, projected, layer["U"], layer["b"], h, c, x,
                               np.empty((B, T, 4 * H), dtype))
        for layer in range(1, self.num_layers):
            x, _, _, _ = direction_forward(self.cell, self._layer_params(params, layer), x,
                                           lengths, need_backward=False)
        return x

    def loss_and_grads(self, params: dict, inputs, targets, state: State | None,
                       rng: np.random.Generator | None = None):
        """Mean cross-entropy of the next characters of one segment, and its gradients.

        Truncated backpropagation through time: ``state`` is a constant here, so no gradient
        flows into the segment it came from.

        Parameters
        ----------
        params : dict
            Network parameters.
        inputs : ndarray (B, T) of int
            Character ids of B streams.
        targets : ndarray (B, T) of int
            The character that follows each input.
        state : list of (h, c)
            From :meth:`initial_state` or from the previous segment (None: zeros).
        rng : numpy.random.Generator, optional
            Given during training: draws the dropout masks.

        Returns
        -------
        loss : float
            Mean over all B*T characters, in nats (accumulated in float64).
        grads : dict
            Gradients with the keys of ``params``.
        new_state : list of (h, c)
            State at the end of the segment, for the next one.
        """
        inputs = self._ids(inputs, "inputs")
        targets = self._ids(targets, "targets")
        if targets.shape != inputs.shape:
            raise ValueError(f"targets have shape {targets.shape}, inputs {inputs.shape}")
        table = params["emb.char"]
        B, T = inputs.shape
        n = B * T
        state = self._state(state, B, table.dtype)
        masks = self._draw_masks(rng, B, T, table.dtype)
        parts = _row_parts(B, T, numba.get_num_threads())
        if len(parts) == 1:
            total, grads, new_state = self._segment(params, inputs, targets, state, masks, n)
        else:
            # The streams are independent: each thread runs a block of them, with the masks
            # drawn above (the same draws whatever the number of threads); their gradients,
            # already divided by n, add up.
            def run(rows):
                saved = numba.get_num_threads()
                numba.set_num_threads(1)
                try:
                    return self._segment(params, inputs[rows], targets[rows],
                                         [(h[rows], None if c is None else c[rows])
                                          for h, c in state], _mask_rows(masks, rows), n)
                finally:
                    numba.set_num_threads(saved)

            pool = thread_pool("lm-rows", max(1, len(parts) - 1))
            futures = [pool.submit(run, rows) for rows in parts[1:]]
            results = [run(parts[0])] + [f.result() for f in futures]
            total = sum(r[0] for r in results)
            grads = results[0][1]
            for _, more, _ in results[1:]:
                for name, value in more.items():
                    grads[name] += value
            new_state = [(np.concatenate([r[2][layer][0] for r in results]),
                          None if state[layer][1] is None
                          else np.concatenate([r[2][layer][1] for r in results]))
                         for layer in range(self.num_layers)]
        return -total / n, grads, new_state

    def _segment(self, params: dict, inputs: np.ndarray, targets: np.ndarray, state: State,
                 masks, n: int):
        """Forward and backward over the rows given: (sum of the log-probabilities of the
        targets, the gradients of the loss summed over these rows and divided by ``n``, the
        rows' new state)."""
        top, new_state, (layers, out_mask, table, gathered) = self._forward(
            params, inputs, state, None, True, masks=masks)
        logits = linear_forward(top, params["out.W"], params["out.b"])
        logp = _log_softmax(logits)
        picked = np.take_along_axis(logp, targets[..., None], axis=-1)
        total = float(picked.sum(dtype=np.float64))
        # d loss / d logits = (softmax - one-hot) / n, built in place of the log-probabilities.
        d_logits = np.exp(logp, out=logp)
        np.put_along_axis(d_logits, targets[..., None],
                          np.take_along_axis(d_logits, targets[..., None], axis=-1) - 1, axis=-1)
        d_logits *= d_logits.dtype.type(1.0 / n)
        grads = {}
        d, grads["out.W"], grads["out.b"] = linear_backward(top, params["out.W"], d_logits)
        if out_mask is not None:
            d *= out_mask
        B, T = inputs.shape
        d_pre = None
        for layer in range(self.num_layers - 1, -1, -1):
            mask, cache = layers[layer]
            layer_params = self._layer_params(params, layer)
            if layer == 0 and gathered:
                W = layer_params["W"]
                layer_params = dict(layer_params, W=np.empty((0, W.shape[1]), W.dtype))
                d_pre = self.workspace.take((B, T, W.shape[1]), W.dtype)  # given back below
            # Zero gradients at the segment's end: what follows it is another call's loss.
            d, layer_grads, _, _ = direction_backward(layer_params, cache,
                                                      np.ascontiguousarray(d), d_pre=d_pre)
            cache.spent = True
            self.workspace.give(cache.pooled)
            for name, value in layer_grads.items():
                grads[self._key(layer) + name] = value
            if mask is not None:
                d *= mask
        d_table = np.empty_like(table)
        if gathered:
            # The projections' gradients, summed per character, give those of W and the table.
            W = params[self._key(0) + "W"]
            d_rows = np.empty((table.shape[0], W.shape[1]), W.dtype)
            ops_cpu.embedding_backward(inputs, d_pre, d_rows)
            self.workspace.give((d_pre,))
            grads[self._key(0) + "W"] = table.T @ d_rows
            np.matmul(d_rows, W.T, out=d_table)
        else:
            ops_cpu.embedding_backward(inputs, np.ascontiguousarray(d), d_table)
        if masks is not None:
            d_table *= masks[0][0]
        grads["emb.char"] = d_table
        return total, {name: grads[name] for name in params}, new_state

    def log_likelihood(self, params: dict, inputs, targets, state: State | None):
        """Log-probability of the next characters of one segment, without dropout and without
        keeping anything for a backward pass (evaluation, perplexity).

        Parameters
        ----------
        params : dict
            Network parameters.
        inputs, targets : ndarray (B, T) of int
            Character ids and the characters that follow them.
        state : list of (h, c)
            From :meth:`initial_state` or from the previous segment (None: zeros).

        Returns
        -------
        total : float
            Sum of the natural-log probabilities of all B*T targets, accumulated in float64.
        n_chars : int
            B*T.
        new_state : list of (h, c)
            State at the end of the segment.
        """
        inputs = self._ids(inputs, "inputs")
        targets = self._ids(targets, "targets")
        if targets.shape != inputs.shape:
            raise ValueError(f"targets have shape {targets.shape}, inputs {inputs.shape}")
        B, T = inputs.shape
        state = self._state(state, B, params["emb.char"].dtype)
        top, new_state, _ = self._forward(params, inputs, state, None, False)
        logp = _log_softmax(linear_forward(top, params["out.W"], params["out.b"]))
        picked = np.take_along_axis(logp, targets[..., None], axis=-1)
        return float(picked.sum(dtype=np.float64)), B * T, new_state

    def next_logits(self, params: dict, ids, state: State | None):
        """Scores of the character that follows ``ids``, for sampling and scoring.

        Parameters
        ----------
        params : dict
            Network parameters.
        ids : ndarray (B, T) or (B,) of int
            Characters to read (a (B,) array is one step).
        state : list of (h, c)
            State before ``ids`` (None: zeros).

        Returns
        -------
        logits : ndarray (B, V)
            Unnormalised log-probabilities of the next character after the last step.
        new_state : list of (h, c)
            State after ``ids``.
        """
        a = np.asarray(ids)
        ids = self._ids(a[:, None] if a.ndim == 1 else a, "ids")
        state = self._state(state, ids.shape[0], params["emb.char"].dtype)
        _, new_state, _ = self._forward(params, ids, state, None, False)
        # The top layer's final state is its output at the last step: only it is projected.
        logits = new_state[-1][0] @ params["out.W"] + params["out.b"]
        return logits, new_state


# Rows per thread below which a segment is not split: a block of streams must keep the kernels'
# matrix products wide enough to run near their best speed.
_MIN_ROWS_PER_THREAD = 8


def _row_parts(B: int, T: int, threads: int) -> list[slice]:
    """The blocks of streams that the threads of a training step take (one block: no split).

    Every block but the last starts and ends on a multiple of the matrix micro-kernel's row
    count (``gemm_cpu.MR``): each stream then falls in a row group of the same size as in a
    one-thread step, and its states round alike (the kernels sum a short group's products in
    another order: with AVX2's 6-row groups, an unaligned split moved states by 1e-16)."""
    k = max(1, min(threads, B // _MIN_ROWS_PER_THREAD))
    bounds = [0, *(min(B, MR * round(i * B / k / MR)) for i in range(1, k)), B]
    parts = [slice(bounds[i], bounds[i + 1]) for i in range(k)]
    return [part for part in parts if part.stop > part.start]


def _mask_rows(masks, rows: slice):
    """The masks of a block of streams: the table's is shared by all."""
    if masks is None:
        return None
    layer_masks, out_mask = masks
    return [layer_masks[0]] + [np.ascontiguousarray(m[rows]) for m in layer_masks[1:]], \
        np.ascontiguousarray(out_mask[rows])


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, shifted by the maximum so that no ``exp`` overflows
    (a new array)."""
    out = scores - scores.max(axis=-1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    return out
