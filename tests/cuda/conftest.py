"""The CUDA kernels run here: under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
Numba is imported, so in a pytest process of their own: see ``.ci/run``) or on a real GPU.
Elsewhere these tests are not collected."""

from __future__ import annotations

import os

import pytest


def _cuda_usable() -> bool:
    try:
        from numba import cuda
    except ImportError:  # numba-cuda not installed
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver or toolkit: nothing to test here
        return False


SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")

if not _cuda_usable():
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(items):
    # The simulator runs SplitMix64 (the dropout masks, the sampler's draws) on NumPy uint64
    # scalars, which warn on the wrap-around that the generator relies on (a GPU wraps silently,
    # as the CPU kernels do).
    for item in items:
        item.add_marker(pytest.mark.filterwarnings(
            "ignore:overflow encountered in scalar:RuntimeWarning:"
            r"tagger\.kernels\.(ops|lm)_cuda"))
