"""Tunables of the compiled kernels, in one place so that tests can patch them.

Values read at *decoration* time (``FASTMATH``, ``CACHE``) are frozen into the compiled code and the
on-disk cache: change them through the environment before ``tagger.kernels`` is imported. Values
read at *call* time (thread counts, block sizes) can be patched at any moment.
"""

from __future__ import annotations

import os

# LLVM fast-math flags for the kernels. 'nnan' and 'ninf' are left out on purpose: the kernels rely
# on exp() overflowing to inf (sigmoid and tanh written through exp saturate correctly that way).
FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

# On-disk cache of compiled kernels. TAGGER_NO_CACHE=1 disables it; TAGGER_CACHE_DIR moves it.
CACHE: bool = os.environ.get("TAGGER_NO_CACHE", "") in ("", "0")
CACHE_DIR: str | None = os.environ.get("TAGGER_CACHE_DIR") or None

# An inner kernel (one only other kernels call) compiled inside another gets only Numba's cheap
# module optimization of its own: the kernel that calls it optimizes the code again in full once
# it is linked in, as a private copy that is the only one its calls run (see tagger.kernels._jit).
# TAGGER_CHEAP_INNER=0 turns this off (every function optimized in full twice, as Numba does).
CHEAP_INNER_KERNELS: bool = os.environ.get("TAGGER_CHEAP_INNER", "1") not in ("", "0")

# Number of threads the CPU kernels use when the caller gives none (None: Numba's current value).
NUM_THREADS: int | None = None

# The two directions of a bidirectional layer run in two threads (the kernels release the GIL)
# when Numba may use 2+ threads and a direction has at least this much work (batch x steps x
# hidden); below it, thread hand-off costs more than it saves (single-sentence latency).
PARALLEL_DIRECTIONS_MIN_WORK: int = 20_000

# Sentences per prediction batch, on the CPU and on a GPU (which larger batches fill better).
# On the CPU whole batches run in parallel threads (tagger.nn.training.run_batches): smaller ones
# share a short input more evenly between the threads, and a batch's arrays stay in cache.
# Measured with `tagger predict`, BiLSTM 128 with characters, 10^4 tokens on two cores: 142k
# tokens/s with 256, 177k with 64; 10^5 tokens on one core: 99k with 256, 107k with 64.
PREDICT_BATCH_CPU: int = 64
PREDICT_BATCH_GPU: int = 256

# CUDA launch sizes (read at call time). Threads per block of the per-sequence recurrent kernels
# and of 1-D kernels; the edge of the square blocks of 2-D kernels; a cap on blocks per grid
# dimension (kernels loop with grid strides beyond it). Tests make them small so that several
# blocks run and bugs across blocks show.
CUDA_THREADS_PER_BLOCK: int = int(os.environ.get("TAGGER_CUDA_TPB", "128"))
CUDA_BLOCK_2D: int = int(os.environ.get("TAGGER_CUDA_BLOCK_2D", "16"))
CUDA_MAX_BLOCKS: int = int(os.environ.get("TAGGER_CUDA_MAX_BLOCKS", "4096"))

# The large matrix products on the GPU: "auto" (cuBLAS when CuPy is installed, else "tiled"),
# "cublas" (through CuPy), "tiled" (the shared-memory kernel) or "naive" (one thread per output; a
# reference for measurements).
CUDA_GEMM: str = os.environ.get("TAGGER_CUDA_GEMM", "auto")

# The LSTM recurrence on the GPU spreads each step over blocks that own a slice of the hidden
# units (at most this many per block, their recurrent weights held in shared memory) and a group
# of at most this many sequences.
CUDA_UNITS_PER_BLOCK: int = int(os.environ.get("TAGGER_CUDA_UNITS", "8"))
CUDA_ROWS_PER_BLOCK: int = int(os.environ.get("TAGGER_CUDA_ROWS", "32"))

# Run all steps of the recurrence in one cooperative launch with a grid-wide barrier between steps
# (when the grid fits on the GPU at once); else one launch per step.
CUDA_PERSISTENT: bool = os.environ.get("TAGGER_CUDA_PERSISTENT", "1") not in ("", "0")

# The backward LSTM recurrence's product with U stages the gate gradients through shared memory
# (fewer and coalesced global reads, each shared read serving several products) instead of
# reading them from global memory for every unit.
CUDA_STAGED_BACKWARD: bool = os.environ.get("TAGGER_CUDA_STAGED", "0") not in ("", "0")

# Both directions of a bidirectional LSTM layer in one launch on the GPU (else one after the other).
CUDA_PAIR_DIRECTIONS: bool = os.environ.get("TAGGER_CUDA_PAIR", "1") not in ("", "0")

# Training and prediction on the GPU keep the parameters, the optimizer state and the activations
# on the device (only batches of ids go over, losses and predictions come back); "0" goes back to
# running the token features, the output layer and the optimizer on the host, with the recurrent
# layers' parameters copied over for every batch.
CUDA_RESIDENT: bool = os.environ.get("TAGGER_CUDA_RESIDENT", "1") not in ("", "0")
