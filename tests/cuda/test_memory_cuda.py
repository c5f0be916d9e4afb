"""The arena of the GPU engine's temporaries (``tagger.kernels.memory_cuda``): arrays of one unit
of work do not overlap, a unit larger than the block still gets its arrays, and once the largest
unit has been seen no allocation is made."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from numba import cuda

from tagger.kernels import memory_cuda


@contextlib.contextmanager
def counting_allocations(calls: list):
    """Record the shape of every array numba allocates."""
    device_array = cuda.device_array
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cuda, "device_array", lambda shape, *r, **k: calls.append(shape)
                      or device_array(shape, *r, **k))
        yield


SHAPES = [((3, 5), np.float32), (7, np.int64), ((2, 2, 3), np.float64), ((1,), np.uint8)]


def fill_and_check(arrays):
    """Write a distinct value into every array, then read them all back: overlapping arrays
    would clobber one another."""
    for k, a in enumerate(arrays):
        a.copy_to_device(np.full(a.shape, k + 1, a.dtype))
    for k, a in enumerate(arrays):
        np.testing.assert_array_equal(a.copy_to_host(), np.full(a.shape, k + 1, a.dtype))


def test_arrays_of_a_unit_are_disjoint_and_the_second_unit_allocates_nothing():
    arena = memory_cuda.Arena()
    calls = []
    with arena.active():  # no block yet: plain allocations, and the size is learnt
        first = [memory_cuda.empty(shape, dtype) for shape, dtype in SHAPES]
    assert arena.fallbacks == len(SHAPES)
    fill_and_check(first)
    for _ in range(2):
        with counting_allocations(calls), arena.active():
            arrays = [memory_cuda.empty(shape, dtype) for shape, dtype in SHAPES]
            arrays.append(memory_cuda.to_device(np.arange(4, dtype=np.float32)))
            np.testing.assert_array_equal(arrays[-1].copy_to_host(), np.arange(4))
            fill_and_check(arrays)
        # The first of these units made the block, in one allocation; the second made none.
        assert calls == [arena.capacity] and arena.fallbacks == len(SHAPES)
    for a, (shape, dtype) in zip(arrays[:-1], SHAPES, strict=True):
        assert tuple(a.shape) == tuple(np.atleast_1d(shape)) and a.dtype == dtype


def test_a_unit_larger_than_the_block_still_gets_its_arrays_and_the_block_grows():
    arena = memory_cuda.Arena()
    with arena.active():
        memory_cuda.empty(10, np.float32)
    with arena.active():  # a 1 MiB block: the second array does not fit
        small = memory_cuda.empty(10, np.float32)
        big = memory_cuda.empty(300_000, np.float64)
        fill_and_check([small, big])
    assert arena.fallbacks == 2
    with arena.active():
        arrays = [memory_cuda.empty(10, np.float32), memory_cuda.empty(300_000, np.float64)]
        fill_and_check(arrays)
    assert arena.fallbacks == 2 and arena.capacity >= 300_000 * 8


def test_no_arena_outside_a_unit_and_nested_units_share_the_outer_one():
    arena, inner = memory_cuda.Arena(), memory_cuda.Arena()
    calls = []
    with counting_allocations(calls):
        memory_cuda.empty(4, np.float32)
    assert calls == [4]
    with arena.active():
        memory_cuda.empty(4, np.float32)
        with inner.active():
            memory_cuda.empty(4, np.float32)
    assert arena.fallbacks == 2 and inner.fallbacks == 0
    with arena.active():
        a = memory_cuda.empty((0, 3), np.float32)  # nothing to allocate
    assert tuple(a.shape) == (0, 3) and arena.fallbacks == 2
