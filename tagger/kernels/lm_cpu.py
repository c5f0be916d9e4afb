"""CPU kernels that sample text from a character language model
(:class:`~tagger.nn.language_model.CharLMNetwork`), one character at a time, entirely in compiled
code: the recurrence of every layer, the output projection and the draw of each step, each drawn
character fed back as the next step's input.

Layout (the network's parameters, see :func:`sample`):

* ``table`` ``(V, E)``: the character embeddings (``emb.char``).
* ``W``, ``U``, ``b`` (and, for the GRU, ``b_rn``): tuples with one array per layer, layer 0's
  ``W`` ``(E, G*H)``, later layers' ``(H, G*H)``, ``U`` ``(H, G*H)``, ``b`` ``(G*H,)``,
  ``b_rn`` ``(H,)``; gate order and cell equations as in :mod:`.rnn_cpu` (LSTM i, f, g, o; GRU
  r, z, n with the reset gate applied after the recurrent product).
* ``out_W`` ``(H, V)``, ``out_b`` ``(V,)``: the output layer.
* ``h`` (and ``c``) ``(L, H)``: the state of every layer, updated in place.

The state convention: ``h``/``c`` hold the state *before* reading ``first`` (the text read so far
except its last character, which is ``first``). Step ``s`` reads its input (``first``, then the
character drawn at step ``s - 1``), computes the scores of the next character and draws
``out[s]``. On return the state has read ``first`` and ``out[:n-1]``, not ``out[n-1]``: it is the
state to continue from with ``first = out[n-1]``, so that sampling ``n`` then ``m`` characters
reads the same characters as sampling ``n + m`` at once.

The draw of step ``s``: the scores are ``h_top @ out_W + out_b``; ids in ``banned`` are never
drawn; with ``temperature == 0`` the result is the highest-scoring allowed id (the lowest id among
equal maxima). Otherwise only the ``top_k`` highest-scoring allowed ids remain (all of them for
``top_k == 0``; ties at the k-th score go to the lower ids), their probabilities are the softmax of
``score / temperature`` in float64 with the maximum subtracted first (so no ``exp`` overflows at
any temperature), and the drawn id is the first, in increasing id order, whose cumulative
probability exceeds ``u = uniform(seed, s)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ._jit import kernel
from .rnn_cpu import sigmoid, tanh

# SplitMix64 (Steele, Lea and Flood 2014), the same generator as ops_cpu.dropout_fill.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_TWO_TO_MINUS_53 = 2.0**-53


@kernel()
def uniform(seed, i):
    """Draw ``i`` of the stream that ``seed`` starts: a float64 in [0, 1) with 53 random bits.

    Counter-based (SplitMix64 at position ``i``): every draw is computed on its own, so the same
    ``(seed, i)`` gives the same number in the kernels and in Python.

    Parameters
    ----------
    seed : uint64
        Start of the stream.
    i : int64
        Position in the stream (a sampler's step).

    Returns
    -------
    float
        The draw.
    """
    # i + 1 in uint64 arithmetic: a uint64 plus an int64 literal would type as float64.
    z = np.uint64(seed) + (np.uint64(i) + _ONE) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * _TWO_TO_MINUS_53


@kernel()
def _times_add(x, M, acc):
    """acc += x @ M (x (K,), M (K, N), acc (N,)), row by row of M so that the inner loop runs
    along contiguous memory (it vectorises)."""
    N = acc.shape[0]
    for k in range(M.shape[0]):
        xk = x[k]
        row = M[k]
        for j in range(N):
            acc[j] += xk * row[j]


@kernel()
def _lstm_cell(x, W, U, b, h, c, pre):
    """One LSTM step of one layer: h and c (H,) updated in place from input x; pre (4H,)
    scratch."""
    H = h.shape[0]
    for j in range(4 * H):
        pre[j] = b[j]
    _times_add(x, W, pre)
    _times_add(h, U, pre)
    for j in range(H):
        gi = sigmoid(pre[j])
        gf = sigmoid(pre[H + j])
        gg = tanh(pre[2 * H + j])
        go = sigmoid(pre[3 * H + j])
        cj = gf * c[j] + gi * gg
        c[j] = cj
        h[j] = go * tanh(cj)


@kernel()
def _gru_cell(x, W, U, b, b_rn, h, pre, rec):
    """One GRU step of one layer (reset after the recurrent product): h (H,) updated in place
    from input x; pre and rec (3H,) scratch."""
    H = h.shape[0]
    for j in range(3 * H):
        pre[j] = b[j]
        rec[j] = 0
    _times_add(x, W, pre)
    _times_add(h, U, rec)
    for j in range(H):
        r = sigmoid(pre[j] + rec[j])
        z = sigmoid(pre[H + j] + rec[H + j])
        nn = tanh(pre[2 * H + j] + r * (rec[2 * H + j] + b_rn[j]))
        h[j] = nn + z * (h[j] - nn)


@kernel()
def _scores(h_top, out_W, out_b, logits):
    """logits = h_top @ out_W + out_b."""
    for v in range(logits.shape[0]):
        logits[v] = out_b[v]
    _times_add(h_top, out_W, logits)


@kernel()
def _allowed_ids(V, banned):
    """A (V,) mask, False at the ids in ``banned``."""
    allowed = np.ones(V, dtype=np.bool_)
    for k in range(banned.shape[0]):
        allowed[banned[k]] = False
    return allowed


@kernel()
def _draw(logits, allowed, temperature, top_k, u, cumulative, work):
    """The id drawn from ``logits`` (see the module docstring); -1 when no id is allowed.

    ``cumulative`` and ``work`` are (V,) float64 scratch.
    """
    V = logits.shape[0]
    best = -1
    for v in range(V):
        if allowed[v] and (best < 0 or logits[v] > logits[best]):  # strict: lowest id on ties
            best = v
    if best < 0 or temperature == 0.0:
        return best
    top = np.float64(logits[best])
    # Top-k: the k-th highest allowed score is the threshold; every id above it is kept, and of
    # the ids at it, the lowest ones until k are kept.
    threshold = -np.inf
    at_threshold = V  # ids at the threshold still to keep
    if top_k > 0:
        m = 0
        for v in range(V):
            if allowed[v]:
                work[m] = logits[v]
                m += 1
        if top_k < m:
            kept = work[:m]
            kept.sort()
            threshold = kept[m - top_k]
            above = 0
            for i in range(m - top_k + 1, m):
                if kept[i] > threshold:
                    above += 1
            at_threshold = top_k - above
    # Cumulative probabilities (unnormalised), in increasing id order: the scaled difference
    # to the maximum is <= 0, so exp never overflows, and the maximum itself weighs exp(0) = 1.
    inv_t = 1.0 / temperature
    total = 0.0
    last = best
    for v in range(V):
        if allowed[v]:
            x = np.float64(logits[v])
            keep = x > threshold
            if x == threshold and at_threshold > 0:
                at_threshold -= 1
                keep = True
            if keep:
                p = math.exp((x - top) * inv_t)
                if p > 0.0:
                    total += p
                    last = v
        cumulative[v] = total
    target = u * total
    for v in range(V):
        if cumulative[v] > target:
            return v
    return last  # only when u * total rounded up to total


@kernel()
def sample_lstm(table, W, U, b, out_W, out_b, h, c, first, n, temperature, top_k, banned, seed,
                out):
    """Sample ``n`` characters from a stacked LSTM language model (see the module docstring).

    Parameters
    ----------
    table : ndarray (V, E)
        Character embeddings.
    W, U, b : tuples of ndarray, one per layer
        Input weights ((E, 4H) for layer 0, (H, 4H) after), recurrent weights (H, 4H) and biases
        (4H,), gate order i, f, g, o.
    out_W, out_b : ndarray (H, V), (V,)
        Output layer.
    h, c : ndarray (L, H)
        Hidden and cell state of every layer before reading ``first``; updated in place.
    first : int64
        First step's input.
    n : int64
        Characters to draw.
    temperature : float64
        Softmax temperature; 0 is greedy.
    top_k : int64
        Draw among the k best allowed ids only; 0 for no limit.
    banned : ndarray (K,) of int64
        Ids never drawn.
    seed : uint64
        Random stream: step ``s`` draws with ``uniform(seed, s)``.
    out : ndarray (n,) of int64
        Out: the drawn ids.
    """
    H = h.shape[1]
    V = out_b.shape[0]
    pre = np.empty(4 * H, dtype=table.dtype)
    logits = np.empty(V, dtype=table.dtype)
    cumulative = np.empty(V, dtype=np.float64)
    work = np.empty(V, dtype=np.float64)
    allowed = _allowed_ids(V, banned)
    prev = first
    for s in range(n):
        x = table[prev]
        for layer in range(len(W)):
            h_l = h[layer]
            _lstm_cell(x, W[layer], U[layer], b[layer], h_l, c[layer], pre)
            x = h_l
        _scores(x, out_W, out_b, logits)
        prev = _draw(logits, allowed, temperature, top_k, uniform(seed, s), cumulative, work)
        out[s] = prev


@kernel()
def sample_gru(table, W, U, b, b_rn, out_W, out_b, h, first, n, temperature, top_k, banned, seed,
               out):
    """Sample ``n`` characters from a stacked GRU language model (see the module docstring).

    Parameters
    ----------
    table : ndarray (V, E)
        Character embeddings.
    W, U, b, b_rn : tuples of ndarray, one per layer
        Input weights ((E, 3H) for layer 0, (H, 3H) after), recurrent weights (H, 3H), biases
        (3H,) and the candidate's recurrent biases (H,), gate order r, z, n.
    out_W, out_b : ndarray (H, V), (V,)
        Output layer.
    h : ndarray (L, H)
        Hidden state of every layer before reading ``first``; updated in place.
    first, n, temperature, top_k, banned, seed, out
        As for :func:`sample_lstm`.
    """
    H = h.shape[1]
    V = out_b.shape[0]
    pre = np.empty(3 * H, dtype=table.dtype)
    rec = np.empty(3 * H, dtype=table.dtype)
    logits = np.empty(V, dtype=table.dtype)
    cumulative = np.empty(V, dtype=np.float64)
    work = np.empty(V, dtype=np.float64)
    allowed = _allowed_ids(V, banned)
    prev = first
    for s in range(n):
        x = table[prev]
        for layer in range(len(W)):
            h_l = h[layer]
            _gru_cell(x, W[layer], U[layer], b[layer], b_rn[layer], h_l, pre, rec)
            x = h_l
        _scores(x, out_W, out_b, logits)
        prev = _draw(logits, allowed, temperature, top_k, uniform(seed, s), cumulative, work)
        out[s] = prev


# --------------------------------------------------------------------------------------------------
# Python entry point
# --------------------------------------------------------------------------------------------------

_GATES = {"lstm": 4, "gru": 3}


def _integer(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _param(params: dict, name: str, shape: tuple, dtype) -> np.ndarray:
    if name not in params:
        raise ValueError(f"params lack {name!r}")
    a = np.asarray(params[name])
    if a.shape != shape:
        raise ValueError(f"params[{name!r}] has shape {a.shape}, expected {shape}")
    if a.dtype != dtype:
        raise ValueError(f"params[{name!r}] has dtype {a.dtype}, emb.char {np.dtype(dtype)}: all "
                         f"parameters must share one dtype")
    if not np.isfinite(a).all():
        raise ValueError(f"params[{name!r}] holds NaN or infinite values")
    return np.ascontiguousarray(a)


def _state_part(value, name: str, H: int, dtype) -> np.ndarray:
    a = np.asarray(value)
    if a.shape not in ((1, H), (H,)):
        raise ValueError(f"{name} has shape {a.shape}, expected (1, {H}) (one stream) or ({H},)")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a.reshape(H).astype(dtype)  # a copy: the caller's array is never written


def prepare_sampling(cell: str, params: dict, num_layers: int, state, first: int, n: int,
                     temperature: float = 1.0, top_k: int = 0,
                     banned: Iterable[int] | None = None, seed: int = 0) -> dict:
    """The checks of :func:`sample` (shared with the GPU sampler, :mod:`.lm_cuda`), before any
    kernel runs: a clear ``ValueError`` for anything a kernel could not read safely.

    Returns
    -------
    dict
        ``arrays``: (table, W, U, b, b_rn, out_W, out_b, h, c) with W, U, b, b_rn lists of one
        array per layer (b_rn empty for the LSTM), h and c (L, H) copies of the state (c None
        for the GRU); and the checked ``first``, ``n``, ``temperature``, ``top_k``, ``banned``
        (int64 array) and ``seed``.
    """
    if cell not in _GATES:
        raise ValueError(f"cell must be one of {', '.join(_GATES)}, got {cell!r}")
    num_layers = _integer(num_layers, "num_layers")
    if num_layers < 1:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    if "emb.char" not in params:
        raise ValueError("params lack 'emb.char'")
    table = np.asarray(params["emb.char"])
    if table.ndim != 2 or table.dtype not in (np.float32, np.float64):
        raise ValueError(f"params['emb.char'] must be a 2-d float32 or float64 array, got shape "
                         f"{table.shape} and dtype {table.dtype}")
    dtype = table.dtype
    table = _param(params, "emb.char", table.shape, dtype)
    V, E = table.shape
    if "out.W" not in params or np.ndim(params["out.W"]) != 2:
        raise ValueError("params lack a 2-d 'out.W'")
    H = np.shape(params["out.W"])[0]
    out_W = _param(params, "out.W", (H, V), dtype)
    out_b = _param(params, "out.b", (V,), dtype)
    G = _GATES[cell]
    W, U, b, b_rn = [], [], [], []
    for layer in range(num_layers):
        key = f"rnn.{layer}.fwd."
        W.append(_param(params, key + "W", (E if layer == 0 else H, G * H), dtype))
        U.append(_param(params, key + "U", (H, G * H), dtype))
        b.append(_param(params, key + "b", (G * H,), dtype))
        if cell == "gru":
            b_rn.append(_param(params, key + "b_rn", (H,), dtype))
    if f"rnn.{num_layers}.fwd.W" in params:
        raise ValueError(f"params hold more than num_layers={num_layers} layers")

    first = _integer(first, "first")
    if not 0 <= first < V:
        raise ValueError(f"first is character id {first}; the vocabulary has ids 0 to {V - 1}")
    n = _integer(n, "n")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(
            temperature, (int, float, np.integer, np.floating)):
        raise ValueError(f"temperature must be a real number, got {temperature!r}")
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be finite and >= 0 (0 is greedy), got {temperature}")
    top_k = _integer(top_k, "top_k")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 for no limit), got {top_k}")
    banned_ids = np.asarray([] if banned is None else list(banned))
    if banned_ids.size and (banned_ids.ndim != 1 or banned_ids.dtype.kind not in "iu"):
        raise ValueError(f"banned must be a sequence of integer ids, got {banned!r}")
    banned_ids = np.ascontiguousarray(banned_ids, np.int64).reshape(-1)
    if banned_ids.size:
        low, high = int(banned_ids.min()), int(banned_ids.max())
        if low < 0 or high >= V:
            raise ValueError(f"banned holds ids in [{low}, {high}]; the vocabulary has ids 0 to "
                             f"{V - 1}")
        if np.unique(banned_ids).size >= V:
            raise ValueError("banned holds every id of the vocabulary: nothing can be drawn")
    seed = _integer(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")

    h = np.zeros((num_layers, H), dtype)
    c = np.zeros((num_layers, H), dtype) if cell == "lstm" else None
    if state is not None:
        if len(state) != num_layers:
            raise ValueError(f"state has {len(state)} layers, num_layers is {num_layers}")
        for layer, pair in enumerate(state):
            if len(pair) != 2:
                raise ValueError(f"state of layer {layer} must be an (h, c) pair")
            h_l, c_l = pair
            h[layer] = _state_part(h_l, f"state of layer {layer}: h", H, dtype)
            if cell == "lstm":
                if c_l is None:
                    raise ValueError(f"state of layer {layer}: the LSTM needs c")
                c[layer] = _state_part(c_l, f"state of layer {layer}: c", H, dtype)
            elif c_l is not None:
                raise ValueError(f"state of layer {layer}: the GRU has no cell state (c must be "
                                 f"None)")

    return {"arrays": (table, W, U, b, b_rn, out_W, out_b, h, c), "first": first, "n": n,
            "temperature": temperature, "top_k": top_k, "banned": banned_ids, "seed": seed}


def sample(cell: str, params: dict, num_layers: int, state, first: int, n: int,
           temperature: float = 1.0, top_k: int = 0, banned: Iterable[int] | None = None,
           seed: int = 0):
    """Sample ``n`` characters of a character language model with the compiled kernels.

    Parameters
    ----------
    cell : {"lstm", "gru"}
        Recurrent cell of the network.
    params : dict
        The parameters of a :class:`~tagger.nn.language_model.CharLMNetwork` (``emb.char``,
        ``rnn.{l}.fwd.W/U/b[/b_rn]``, ``out.W``, ``out.b``), all float32 or all float64.
    num_layers : int
        Recurrent layers.
    state : list of (h, c), or None
        The network's state of one stream (``h`` and ``c`` of shape (1, H) or (H,), ``c`` None
        for the GRU) *before* reading ``first``; None for zeros. Not modified.
    first : int
        The first step's input: the last character of the text read so far.
    n : int
        Characters to draw (>= 0).
    temperature : float
        Softmax temperature (finite, >= 0); 0 draws the best-scoring allowed id.
    top_k : int
        Draw only among the ``top_k`` best-scoring allowed ids (>= 0; 0 for no limit).
    banned : iterable of int, optional
        Ids never drawn (padding, unknown symbols).
    seed : int
        In [0, 2**64): the same seed gives the same characters.

    Returns
    -------
    ids : ndarray (n,) of int64
        The drawn characters.
    new_state : list of (h, c)
        One (1, H) pair per layer (``c`` None for the GRU): the state after reading ``first``
        and ``ids[:-1]``, to continue with ``first = ids[-1]`` (the given state when n == 0).
    """
    args = prepare_sampling(cell, params, num_layers, state, first, n, temperature, top_k, banned,
                            seed)
    table, W, U, b, b_rn, out_W, out_b, h, c = args["arrays"]
    n = args["n"]
    ids = np.empty(n, np.int64)
    call_args = (np.int64(args["first"]), np.int64(n), np.float64(args["temperature"]),
                 np.int64(args["top_k"]), args["banned"], np.uint64(args["seed"]), ids)
    if cell == "lstm":
        sample_lstm(table, tuple(W), tuple(U), tuple(b), out_W, out_b, h, c, *call_args)
    else:
        sample_gru(table, tuple(W), tuple(U), tuple(b), tuple(b_rn), out_W, out_b, h,
                   *call_args)
    new_state = [(h[layer:layer + 1].copy(), None if c is None else c[layer:layer + 1].copy())
                 for layer in range(num_layers)]
    return ids, new_state
