"""Small CPU kernels around the recurrent core: embedding lookups, their gradients, and the
character CNN (window gathering, max over a word's characters, and its gradients).

Every gradient kernel overwrites its output (it zeroes it first), so callers never accumulate by
accident. Scatter-adds run serially: the order of additions is fixed, so results are bitwise
reproducible.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel


@kernel()
def embedding_lookup(table, ids, out):
    """out[n] = table[ids[n]] for every n (ids flattened; -1 gives a zero row)."""
    flat_ids = ids.ravel()
    flat_out = out.reshape((flat_ids.shape[0], table.shape[1]))
    for n in range(flat_ids.shape[0]):
        i = flat_ids[n]
        row = flat_out[n]
        if i < 0:
            row[:] = 0
        else:
            # A loop, not row[:] = table[i]: see rnn_cpu._copy.
            src = table[i]
            for j in range(row.shape[0]):
                row[j] = src[j]


@kernel()
def embedding_backward(ids, d_out, d_table):
    """d_table = sum over n of d_out[n] scattered to row ids[n] (rows with id -1 ignored)."""
    flat_ids = ids.ravel()
    flat_d = d_out.reshape((flat_ids.shape[0], d_table.shape[1]))
    d_table[:] = 0
    for n in range(flat_ids.shape[0]):
        i = flat_ids[n]
        if i >= 0:
            # A loop, not d_table[i, :] += flat_d[n]: see rnn_cpu._copy.
            target = d_table[i]
            src = flat_d[n]
            for j in range(target.shape[0]):
                target[j] += src[j]


@kernel()
def char_windows(char_table, char_ids, char_lengths, width, windows):
    """Gather the convolution windows of a character CNN ("same" padding, zeros outside a word),
    one row per character: padding positions get no row, so no product is spent on them.

    Parameters
    ----------
    char_table : ndarray (V, C)
        Character embeddings.
    char_ids : ndarray (U, L) of int
        Character ids of U words, right-padded.
    char_lengths : ndarray (U,) of int
        Characters per word; their sum is N.
    width : int
        Odd window width k.
    windows : ndarray (N, k*C)
        Out: word ``u``'s rows follow those of the words before it; in its row ``p``, columns
        ``i*C:(i+1)*C`` hold the embedding of character ``p + i - k//2``, zero when that position
        is outside the word.
    """
    U = char_ids.shape[0]
    C = char_table.shape[1]
    half = width // 2
    row = 0
    for u in range(U):
        n = char_lengths[u]
        for p in range(n):
            for i in range(width):
                q = p + i - half
                if 0 <= q < n:
                    source = char_table[char_ids[u, q]]
                    for c in range(C):
                        windows[row, i * C + c] = source[c]
                else:
                    for c in range(C):
                        windows[row, i * C + c] = 0
            row += 1


@kernel()
def char_max_pool(conv, bias, char_lengths, out, argmax):
    """Max over each word's characters of the convolution plus bias.

    Parameters
    ----------
    conv : ndarray (N, F)
        ``windows @ W`` for the rows of :func:`char_windows`.
    bias : ndarray (F,)
        Added to every row before the maximum.
    char_lengths : ndarray (U,) of int
        Characters per word.
    out : ndarray (U, F)
        Out: the maximum over the word's rows (zero for an empty word).
    argmax : ndarray (U, F) of int64
        Out: the row of ``conv`` that attains it, the first one on ties (-1 for an empty word).
    """
    U = char_lengths.shape[0]
    F = conv.shape[1]
    row = 0
    for u in range(U):
        n = char_lengths[u]
        if n == 0:
            out[u, :] = 0
            argmax[u, :] = -1
            continue
        for j in range(F):
            out[u, j] = conv[row, j] + bias[j]
            argmax[u, j] = row
        for r in range(row + 1, row + n):
            for j in range(F):
                value = conv[r, j] + bias[j]
                if value > out[u, j]:  # strict: ties keep the earlier character
                    out[u, j] = value
                    argmax[u, j] = r
        row += n


@kernel()
def char_cnn_backward(char_ids, char_lengths, width, windows, W_t, argmax, d_out, dW_t, db,
                      d_table):
    """Gradients of the character CNN (:func:`char_windows`, ``@ W``, :func:`char_max_pool`).

    Only the row that won a filter's maximum passes its gradient on, so the work is one window
    per (word, filter) rather than a product over every character. Each output is overwritten;
    sums run in a fixed order.

    Parameters
    ----------
    char_ids, char_lengths, width, windows
        As given to and filled by :func:`char_windows`.
    W_t : ndarray (F, k*C)
        The filters, transposed.
    argmax : ndarray (U, F) of int64
        As filled by :func:`char_max_pool`.
    d_out : ndarray (U, F)
        Gradient with respect to the pooled vectors.
    dW_t : ndarray (F, k*C)
        Out: gradient with respect to the filters, transposed.
    db : ndarray (F,)
        Out: gradient with respect to the bias.
    d_table : ndarray (V, C)
        Out: gradient with respect to the character embeddings.
    """
    U = char_ids.shape[0]
    F, K = W_t.shape
    C = d_table.shape[1]
    half = width // 2
    dW_t[:] = 0
    db[:] = 0
    d_table[:] = 0
    first = 0
    for u in range(U):
        n = char_lengths[u]
        for j in range(F):
            r = argmax[u, j]
            if r < 0:
                continue
            g = d_out[u, j]
            db[j] += g
            for k in range(K):
                dW_t[j, k] += g * windows[r, k]
            p = r - first
            for i in range(width):
                q = p + i - half
                if 0 <= q < n:
                    target = d_table[char_ids[u, q]]
                    for c in range(C):
                        target[c] += g * W_t[j, i * C + c]
        first += n


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@kernel()
def dropout_fill(seed, threshold, scale, out):
    """An inverted-dropout mask from a counter-based generator: ``out[i]`` is ``scale`` when the
    53-bit uniform integer drawn for ``i`` is below ``threshold``, else 0.

    Draw ``i`` is SplitMix64 (Steele, Lea and Flood 2014) at position ``i`` of the stream that
    ``seed`` starts, so that the mask depends on the seed alone and every element is computed
    independently of the others (the loop vectorizes).

    Parameters
    ----------
    seed : uint64
        Start of the stream (one draw of the caller's generator).
    threshold : uint64
        ``keep * 2**53``.
    scale : float
        ``1 / keep``, in the mask's dtype.
    out : ndarray, flat
        Out: the mask.
    """
    for i in range(out.shape[0]):
        z = seed + np.uint64(i + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        out[i] = scale if (z >> np.uint64(11)) < threshold else 0
