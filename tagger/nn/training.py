"""Training utilities: batching by length, padding, thread control and one optimisation step."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import threading
from collections.abc import Callable, Sequence

import numba
import numpy as np

from .optim import Optimizer, clip_scale, global_norm


def length_batches(lengths: Sequence[int], batch_size: int,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Split indices into batches of similar length, so that little padding is computed.

    Indices are sorted by decreasing length (ties in a random order when ``rng`` is given), cut into
    batches of ``batch_size``, and the batches are shuffled with ``rng``. Within a batch the order
    is by decreasing length, which lets the recurrent kernels skip finished sequences.

    Parameters
    ----------
    lengths : sequence of int
        Length of every example.
    batch_size : int
        Examples per batch.
    rng : numpy.random.Generator, optional
        Shuffles ties and batch order; None keeps a deterministic order.

    Returns
    -------
    list of ndarray
        Index arrays, one per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.asarray(lengths)
    tie = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths))
    order = np.lexsort((tie, -lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class EpochBatches:
    """The batches of each epoch: shuffled passes over the training set (:func:`length_batches`,
    empty examples left out), each cut into ``parts`` epochs of consecutive batches.

    With ``epoch_size`` None, or at least the number of (non-empty) examples, an epoch is one
    pass, drawn from the generator exactly as ``length_batches(lengths, batch_size, rng)``
    would draw it. Otherwise a pass is cut into ``ceil(examples / epoch_size)`` epochs (at most
    one a batch) of whole batches, as many alike as can be (so about ``epoch_size`` examples
    each), so that a large corpus is scored, averaged and early-stopped several times a pass.

    To go on from a checkpoint in the middle of a pass, :attr:`pass_state` (the generator's
    state before the pass was shuffled; None between passes) and :attr:`position` (the batch
    of the pass the next epoch starts at) are saved; :meth:`restore` draws the pass again from
    them and goes on from that batch, even if the pass is now cut differently (another
    ``epoch_size``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, epoch_size: int | None):
        self.lengths = lengths
        self.batch_size = batch_size
        examples = sum(1 for n in lengths if n > 0)
        # At least a batch an epoch: the examples are sorted longest first before they are cut
        # into batches, so ceil(examples / batch_size) batches hold them.
        self.parts = 1 if epoch_size is None else max(
            1, min(-(-examples // epoch_size), -(-examples // batch_size)))
        self.position = 0  # 0: the next epoch starts a new pass
        self.pass_state: dict | None = None
        self._batches: list[np.ndarray] | None = None

    def _draw(self, rng: np.random.Generator) -> list[np.ndarray]:
        lengths = self.lengths
        return [idx for idx in length_batches(lengths, self.batch_size, rng)
                if lengths[idx[0]] > 0]  # empty sequences have nothing to teach

    def restore(self, pass_state: dict | None, position: int) -> None:
        """Go on in the middle of the pass that began with ``pass_state`` (a generator state),
        from its batch ``position``; a position outside this training set's pass (other data)
        starts a new pass."""
        self.position, self.pass_state, self._batches = 0, None, None
        if pass_state is None or position <= 0:
            return
        generator = np.random.default_rng(0)
        generator.bit_generator.state = pass_state
        batches = self._draw(generator)
        if position < len(batches):
            self.position, self.pass_state, self._batches = position, pass_state, batches

    def next_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The batches of the next epoch (a new pass, drawn from ``rng``, when one ends)."""
        if self.position == 0 or self._batches is None:
            self.position = 0
            self.pass_state = rng.bit_generator.state if self.parts > 1 else None
            self._batches = self._draw(rng)
        batches, start = self._batches, self.position
        n = len(batches)
        # The first boundary of the cut after start (boundaries k n / parts rise by one batch
        # at least, as parts <= n).
        end = next((b for b in (k * n // self.parts for k in range(1, self.parts + 1))
                    if b > start), n)
        self.position = end if end < n else 0
        if not self.position:  # the pass is over: nothing to draw again
            self.pass_state = None
        return batches[start:end]


def pad_sequences(sequences: Sequence[np.ndarray], dtype=None, value=0):
    """Stack variable-length arrays (L_i, ...) into one right-padded array (B, T, ...).

    Returns
    -------
    padded : ndarray
        Shape (B, max L_i, ...), ``value`` at padding.
    lengths : ndarray (B,) of int64
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    first = np.asarray(sequences[0]) if len(sequences) else np.zeros(0)
    T = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(sequences), T) + first.shape[1:], value, dtype=dtype or first.dtype)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


@contextlib.contextmanager
def thread_limit(n_threads: int | None = None, kernel_blas: bool = True):
    """Run the block with ``n_threads`` Numba threads and one BLAS thread, restoring both after.

    BLAS stays single-threaded inside the engine: its matrix products are small, parallelism
    comes from the Numba kernels, and OpenBLAS threads spinning beside Numba's OpenMP threads
    were measured to slow a training step 10-90x on two cores.

    Parameters
    ----------
    n_threads : int or None
        Numba threads (capped at Numba's maximum); None keeps the current number.
    kernel_blas : bool
        Whether kernels in the block may call ``np.dot`` (SciPy's BLAS, loaded here so that the
        limit applies to it). Only the GRU and RNN backward passes do; prediction passes False
        and saves loading SciPy's linear algebra (0.15-0.2 s of a one-sentence ``tagger
        predict``). NumPy's own BLAS is limited either way.
    """
    previous = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with _blas_controller(kernel_blas).limit(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


_POOLS: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def thread_pool(name: str, workers: int) -> concurrent.futures.ThreadPoolExecutor:
    """The process's pool of ``workers`` threads named ``tagger-<name>``, made on first use
    and kept (its threads keep their work arrays from call to call)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(name)
        if pool is None:
            pool = _POOLS[name] = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"tagger-{name}")
        return pool


def run_batches(fn: Callable, batches: Sequence, parallel: bool = True) -> None:
    """Call ``fn(batch)`` for every batch, the batches spread over Numba's threads.

    Prediction batches are independent, and most of a batch's time goes to kernels that release
    the GIL. With ``parallel`` and ``numba.get_num_threads()`` = n >= 2, this thread and up to
    n - 1 helper threads each take the next batch until none is left, and each runs its kernels
    on one Numba thread. Whole batches in parallel keep every core busy, also while a batch is
    in Python (encoding its tokens) or in small kernels (character features, decoding), which a
    split of one batch's work (the two directions of a BiLSTM) leaves to one core: ``tagger
    predict`` went from about 100k to 160k tokens/s on two cores.

    ``fn`` is called from several threads at once: it must write its results to places of its
    own batch. Pass ``parallel=False`` when the kernels run on a GPU (one host thread drives
    it). An exception raised by ``fn`` is raised here, after every thread has finished the
    batch it was on; no batch is started after it.
    """
    threads = min(numba.get_num_threads(), len(batches)) if parallel else 1
    if threads < 2:
        for batch in batches:
            fn(batch)
        return
    pending = iter(batches)
    lock = threading.Lock()
    failed = threading.Event()

    def work() -> None:
        saved = numba.get_num_threads()
        numba.set_num_threads(1)  # per thread: the other threads keep their own setting
        try:
            while not failed.is_set():
                with lock:
                    batch = next(pending, pending)
                if batch is pending:
                    return
                try:
                    fn(batch)
                except BaseException:
                    failed.set()
                    raise
        finally:
            numba.set_num_threads(saved)

    pool = thread_pool("batch", max(1, numba.config.NUMBA_NUM_THREADS - 1))
    helpers = [pool.submit(work) for _ in range(threads - 1)]
    try:
        work()
    except BaseException:
        failed.set()
        raise
    finally:
        concurrent.futures.wait(helpers)
    for helper in helpers:
        helper.result()


_controller = None
_with_kernel_blas = False


def _blas_controller(kernel_blas: bool = True):
    """threadpoolctl's view of the BLAS libraries, made once, after loading the one the kernels
    call. Numba's ``np.dot`` calls SciPy's BLAS, which loads with the first kernel: a limit set
    before it loads does not apply to it, and two directions' products, each with all cores'
    threads, then ran one at a time instead of side by side (measured: 1.0x instead of 1.9x
    for two threads)."""
    global _controller, _with_kernel_blas
    if kernel_blas and not _with_kernel_blas:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

        _with_kernel_blas = True
        _controller = None  # made again, to see the library just loaded
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def apply_gradients(params: dict, grads: dict, loss: float, optimizer: Optimizer,
                    clip_norm: float | None) -> float:
    """Take one optimizer step with the gradients clipped to the global norm ``clip_norm``
    (the gradient arrays themselves are left as they are).

    Returns
    -------
    float
        The global gradient norm before clipping.

    Raises
    ------
    FloatingPointError
        When the loss or the gradients are not finite; the parameters are left unchanged.
    """
    norm = global_norm(grads)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise FloatingPointError(f"non-finite loss ({loss}) or gradient norm ({norm})")
    # The clipping factor goes into the update rather than a pass over every gradient.
    optimizer.step(params, grads, scale=clip_scale(norm, clip_norm))
    return norm


def train_step(network, params: dict, optimizer: Optimizer, x: np.ndarray, lengths: np.ndarray,
               tags: np.ndarray, rng: np.random.Generator | None, clip_norm: float | None = 5.0):
    """One optimisation step of a :class:`~tagger.nn.network.TaggingNetwork` on a batch.

    Returns
    -------
    loss : float
        The batch loss before the update.
    grad_norm : float
        The global gradient norm before clipping.

    Raises
    ------
    FloatingPointError
        When the loss or the gradients are not finite; the parameters are left unchanged.
    """
    loss, grads, _ = network.loss_and_grads(params, x, lengths, tags, rng)
    return loss, apply_gradients(params, grads, loss, optimizer, clip_norm)
