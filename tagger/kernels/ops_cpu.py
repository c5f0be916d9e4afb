"""Small CPU kernels around the recurrent core: embedding lookups, their gradients, and the
character CNN's window gathering (its max-over-time pooling is ``pool_cpu.max_pool``).

Every gradient kernel overwrites its output (it zeroes it first), so callers never accumulate by
accident. Scatter-adds run serially: the order of additions is fixed, so results are bitwise
reproducible.
"""

from __future__ import annotations

from ._jit import kernel


@kernel()
def embedding_lookup(table, ids, out):
    """out[n] = table[ids[n]] for every n (ids flattened; -1 gives a zero row)."""
    flat_ids = ids.ravel()
    flat_out = out.reshape((flat_ids.shape[0], table.shape[1]))
    for n in range(flat_ids.shape[0]):
        i = flat_ids[n]
        if i < 0:
            flat_out[n, :] = 0
        else:
            flat_out[n, :] = table[i]


@kernel()
def embedding_backward(ids, d_out, d_table):
    """d_table = sum over n of d_out[n] scattered to row ids[n] (rows with id -1 ignored)."""
    flat_ids = ids.ravel()
    flat_d = d_out.reshape((flat_ids.shape[0], d_table.shape[1]))
    d_table[:] = 0
    for n in range(flat_ids.shape[0]):
        i = flat_ids[n]
        if i >= 0:
            d_table[i, :] += flat_d[n]


@kernel()
def char_windows(char_table, char_ids, char_lengths, width, windows):
    """Gather the convolution windows of a character CNN ("same" padding, zeros outside a word).

    Parameters
    ----------
    char_table : ndarray (V, C)
        Character embeddings.
    char_ids : ndarray (U, L) of int
        Character ids of U words, right-padded.
    char_lengths : ndarray (U,) of int
        Characters per word.
    width : int
        Odd window width k.
    windows : ndarray (U, L, k*C)
        Out: ``windows[u, p, i*C:(i+1)*C]`` is the embedding of character ``p + i - k//2`` of word
        ``u``, zero when that position is outside the word; zero for ``p >= char_lengths[u]``.
    """
    U, L = char_ids.shape
    C = char_table.shape[1]
    half = width // 2
    windows[:] = 0
    for u in range(U):
        n = char_lengths[u]
        for p in range(n):
            for i in range(width):
                q = p + i - half
                if 0 <= q < n:
                    windows[u, p, i * C:(i + 1) * C] = char_table[char_ids[u, q]]


@kernel()
def char_windows_backward(char_ids, char_lengths, width, d_windows, d_table):
    """Gradient of :func:`char_windows` with respect to the character table (overwrites it)."""
    U, L = char_ids.shape
    C = d_table.shape[1]
    half = width // 2
    d_table[:] = 0
    for u in range(U):
        n = char_lengths[u]
        for p in range(n):
            for i in range(width):
                q = p + i - half
                if 0 <= q < n:
                    d_table[char_ids[u, q], :] += d_windows[u, p, i * C:(i + 1) * C]
