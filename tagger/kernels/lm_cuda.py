"""CUDA kernels (numba-cuda) that sample text from a character language model: the GPU side of
:mod:`tagger.kernels.lm_cpu`, with the same state convention, the same draws and the same
results up to float rounding.

One block of threads runs the whole generation in one launch: at each step the threads share
the gate products of every layer (one gate column per thread, in turn), the cell update (one
unit per thread) and the output scores (one character per thread), meeting at barriers; the
top-k ranks are computed one character per thread, and thread 0 adds up the probabilities in id
order and draws with the same SplitMix64 stream as the CPU (``uniform(seed, s)`` at step ``s``).
Before the first draw the block reads ``read`` (the text before ``first``, the prompt), so a
prompt is read once, on the device, and never again.

Sums run in the CPU kernels' order (bias, then the input product, then the recurrent one, each
over increasing ``k``), so a float64 model draws the same characters on both devices.

The layers' weights go over as stacked arrays: ``W0`` (E, G*H) for the first layer, ``Wr``
(max(L-1, 1), H, G*H) for the others, ``U`` (L, H, G*H), ``b`` (L, G*H) and, for the GRU,
``b_rn`` (L, H).
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import cuda

from .. import _config

# SplitMix64 with the dropout kernel's constants, all uint64 (see ops_cuda: a uint64 mixed with
# a signed integer turns into float64 in Numba).
from .ops_cuda import _GOLDEN, _MIX1, _MIX2, _ONE, _S11, _S27, _S30, _S31

_TWO_TO_MINUS_53 = 2.0**-53


@cuda.jit(device=True, inline=True)
def uniform(seed, i):
    """Draw ``i`` of the stream ``seed``: :func:`tagger.kernels.lm_cpu.uniform`, bitwise."""
    z = seed + (np.uint64(i) + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _TWO_TO_MINUS_53


@cuda.jit
def _uniform_kernel(seed, start, out):
    i0 = cuda.grid(1)
    for i in range(i0, out.shape[0], cuda.gridsize(1)):
        out[i] = uniform(seed, start + i)


def uniforms(seed: int, start: int, n: int) -> np.ndarray:
    """``uniform(seed, start + i)`` for ``i < n``, computed on the device (for tests)."""
    out = cuda.device_array(max(n, 1), np.float64)
    _uniform_kernel[1, _config.CUDA_THREADS_PER_BLOCK](np.uint64(seed), np.int64(start), out)
    return out.copy_to_host()[:n]


@cuda.jit(device=True, inline=True)
def _sigmoid(v, one):
    # ``one`` has the arrays' dtype: a bare 1.0 would promote float32 arithmetic to float64.
    return one / (one + math.exp(-v))


@cuda.jit(device=True, inline=True)
def _step(lstm, table, W0, Wr, U, b, b_rn, h, c, pre, rec, prev):
    """Every layer reads one character (``prev``): the block's threads update ``h`` (and
    ``c``) in place. Starts and ends at a barrier-free point: callers sync before reading."""
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    L, H = h.shape
    G = U.shape[2] // H
    E = table.shape[1]
    for layer in range(L):
        for j in range(tid, G * H, nt):
            acc = b[layer, j]
            if layer == 0:
                for k in range(E):
                    acc += table[prev, k] * W0[k, j]
            else:
                for k in range(H):
                    acc += h[layer - 1, k] * Wr[layer - 1, k, j]
            r = pre.dtype.type(0)
            for k in range(H):
                r += h[layer, k] * U[layer, k, j]
            if lstm:
                pre[j] = acc + r
            else:
                pre[j] = acc
                rec[j] = r
        cuda.syncthreads()
        one = pre.dtype.type(1)
        for j in range(tid, H, nt):
            if lstm:
                gi = _sigmoid(pre[j], one)
                gf = _sigmoid(pre[H + j], one)
                gg = math.tanh(pre[2 * H + j])
                go = _sigmoid(pre[3 * H + j], one)
                cj = gf * c[layer, j] + gi * gg
                c[layer, j] = cj
                h[layer, j] = go * math.tanh(cj)
            else:
                rg = _sigmoid(pre[j] + rec[j], one)
                z = _sigmoid(pre[H + j] + rec[H + j], one)
                nn = math.tanh(pre[2 * H + j] + rg * (rec[2 * H + j] + b_rn[layer, j]))
                h[layer, j] = nn + z * (h[layer, j] - nn)
        cuda.syncthreads()


@cuda.jit
def _sample_kernel(lstm, table, W0, Wr, U, b, b_rn, out_W, out_b, h, c, read, first, n,
                   temperature, top_k, allowed, seed, out, pre, rec, logits, keep, cumulative,
                   chosen):
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    L, H = h.shape
    V = out_b.shape[0]
    for k in range(read.shape[0]):
        _step(lstm, table, W0, Wr, U, b, b_rn, h, c, pre, rec, read[k])
    prev = first
    for s in range(n):
        _step(lstm, table, W0, Wr, U, b, b_rn, h, c, pre, rec, prev)
        for v in range(tid, V, nt):
            acc = out_b[v]
            for k in range(H):
                acc += h[L - 1, k] * out_W[k, v]
            logits[v] = acc
        cuda.syncthreads()
        # Top-k: an allowed id is kept when fewer than k allowed ids rank before it (a higher
        # score, or the same score and a lower id), the CPU kernel's rule.
        for v in range(tid, V, nt):
            kept = allowed[v] != 0
            if kept and top_k > 0:
                x = logits[v]
                before = 0
                for u in range(V):
                    if allowed[u] != 0 and (logits[u] > x or (logits[u] == x and u < v)):
                        before += 1
                kept = before < top_k
            keep[v] = 1 if kept else 0
        cuda.syncthreads()
        if tid == 0:
            best = -1
            for v in range(V):
                if allowed[v] != 0 and (best < 0 or logits[v] > logits[best]):
                    best = v
            drawn = best
            if best >= 0 and temperature != 0.0:
                top = np.float64(logits[best])
                inv_t = 1.0 / temperature
                total = 0.0
                last = best
                for v in range(V):
                    if keep[v] != 0:
                        p = math.exp((np.float64(logits[v]) - top) * inv_t)
                        if p > 0.0:
                            total += p
                            last = v
                    cumulative[v] = total
                target = uniform(seed, s) * total
                drawn = last
                for v in range(V):
                    if cumulative[v] > target:
                        drawn = v
                        break
            out[s] = drawn
            chosen[0] = drawn
        cuda.syncthreads()
        prev = chosen[0]


def _block_size(G: int, H: int, V: int) -> int:
    """Threads of the one block: enough for the widest loop, a multiple of 32, at most 512 (the
    simulator takes the configured block size, so that each thread runs several items)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0"):
        return _config.CUDA_THREADS_PER_BLOCK
    widest = max(G * H, V)
    return int(min(512, max(32, 32 * math.ceil(widest / 32))))


def sample(cell: str, params: dict, num_layers: int, state, first: int, n: int,
           temperature: float = 1.0, top_k: int = 0, banned=None, seed: int = 0, read=None):
    """:func:`tagger.kernels.lm_cpu.sample` on the GPU, with the same arguments, checks and
    results, and ``read``: ids to read (from ``state``) before ``first``, such as a prompt, in
    the same launch.

    Returns
    -------
    ids : ndarray (n,) of int64
    new_state : list of (h, c)
        One (1, H) pair per layer on the host.
    """
    from .lm_cpu import prepare_sampling

    args = prepare_sampling(cell, params, num_layers, state, first, n, temperature, top_k,
                            banned, seed)
    table, W, U, b, b_rn, out_W, out_b, h, c = args["arrays"]
    dtype = table.dtype
    V, E = table.shape
    H = out_W.shape[0]
    G = U[0].shape[1] // H
    L = num_layers
    read_ids = np.ascontiguousarray(np.zeros(0, np.int64) if read is None else read, np.int64)
    if read_ids.ndim != 1 or (read_ids.size and (read_ids.min() < 0 or read_ids.max() >= V)):
        raise ValueError(f"read must be a 1-d sequence of ids in [0, {V - 1}]")
    Wr = np.stack(W[1:]) if L > 1 else np.zeros((1, H, G * H), dtype)
    stacked_b_rn = np.stack(b_rn) if b_rn else np.zeros((L, H), dtype)
    allowed = np.ones(V, np.int8)
    allowed[args["banned"]] = 0
    d_h = cuda.to_device(h)
    d_c = cuda.to_device(c if c is not None else np.zeros((L, H), dtype))
    out = cuda.device_array(max(n, 1), np.int64)
    _sample_kernel[1, _block_size(G, H, V)](
        cell == "lstm", cuda.to_device(table), cuda.to_device(W[0]), cuda.to_device(Wr),
        cuda.to_device(np.stack(U)), cuda.to_device(np.stack(b)), cuda.to_device(stacked_b_rn),
        cuda.to_device(out_W), cuda.to_device(out_b), d_h, d_c,
        cuda.to_device(read_ids if read_ids.size else np.zeros(0, np.int64)),
        np.int64(args["first"]), np.int64(n), np.float64(args["temperature"]),
        np.int64(args["top_k"]), cuda.to_device(allowed), np.uint64(args["seed"]), out,
        cuda.device_array(G * H, dtype), cuda.device_array(G * H, dtype),
        cuda.device_array(V, dtype), cuda.device_array(V, np.int8),
        cuda.device_array(V, np.float64), cuda.device_array(1, np.int64))
    ids = out.copy_to_host()[:n]
    h = d_h.copy_to_host()
    c = d_c.copy_to_host() if cell == "lstm" else None
    new_state = [(h[layer:layer + 1].copy(), None if c is None else c[layer:layer + 1].copy())
                 for layer in range(L)]
    return ids, new_state
