"""Device memory for the temporary arrays of the GPU engine.

Numba's default allocator calls the driver for every device array and frees them in batches as
they are collected; ``cuMemFree`` waits for the device to finish its work, so a training step
that makes fifty temporary arrays would stall the host several times per step, and each
allocation costs a driver call. An :class:`Arena` instead hands out the temporaries of one unit
of work (a training step, a prediction batch) as views of one device block, and takes them all
back when that unit ends: after the first few steps, a step makes no allocation at all.

:func:`empty` and :func:`to_device` are the engine's allocation calls for temporaries: they take
from the arena active in the calling thread (see :meth:`Arena.active`), or allocate as numba
does when none is. Arrays that outlive the unit of work (parameters, optimizer state, caches)
are allocated with ``numba.cuda`` directly.

Reuse is safe because everything runs on one stream, in order: the kernels of the next unit,
which write into the same memory, start after those of the last have read it. An array from an
arena must not be kept once the unit ends.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np
from numba import cuda

_ALIGN = 256  # bytes; the driver's own allocations are aligned at least this much
_GROWTH = 1.25  # a grown block has this much room over the largest unit seen
_MIN_BLOCK = 1 << 20

_ACTIVE = threading.local()


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


class Arena:
    """One device block from which the temporaries of a unit of work are carved, in order.

    A unit that needs more than the block holds gets ordinary allocations for the rest, and the
    next unit starts with a block large enough for it (with some room to spare), so the number of
    driver allocations falls to zero once the largest unit has been seen.

    Attributes
    ----------
    capacity : int
        Bytes in the block.
    fallbacks : int
        Arrays allocated outside the block so far (units that outgrew it).
    """

    def __init__(self):
        self._block = None
        self.capacity = 0
        self._offset = 0
        self._needed = 0
        self.fallbacks = 0

    @contextlib.contextmanager
    def active(self):
        """Make this the arena of the calling thread for one unit of work: every array handed
        out in it is taken back when the block exits (nested units share the outer one's)."""
        if getattr(_ACTIVE, "arena", None) is not None:
            yield
            return
        if self._needed > self.capacity:
            size = _round_up(max(int(self._needed * _GROWTH), _MIN_BLOCK), _MIN_BLOCK)
            self._block = None  # the old block goes once its arrays are gone
            self._block = cuda.device_array(size, np.uint8)
            self.capacity = size
        self._offset = 0
        self._needed = 0
        _ACTIVE.arena = self
        try:
            yield
        finally:
            _ACTIVE.arena = None

    def empty(self, shape, dtype):
        """An uninitialised device array from the block (or, past its end, a new one)."""
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in (shape if isinstance(shape, tuple | list) else (shape,)))
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes == 0:  # numba allocates nothing for an empty array
            return cuda.device_array(shape, dtype)
        room = _round_up(nbytes, _ALIGN)
        self._needed += room
        if self._block is None or self._offset + room > self.capacity:
            self.fallbacks += 1
            return cuda.device_array(shape, dtype)
        start = self._offset
        self._offset += room
        return self._block[start:start + nbytes].view(dtype).reshape(shape)


def empty(shape, dtype):
    """An uninitialised device array for a temporary: from the calling thread's active arena,
    else a new allocation."""
    arena = getattr(_ACTIVE, "arena", None)
    if arena is None:
        return cuda.device_array(shape, dtype)
    return arena.empty(shape, dtype)


def to_device(a: np.ndarray):
    """A device copy of host array ``a`` for a temporary (see :func:`empty`)."""
    a = np.ascontiguousarray(a)
    out = empty(a.shape, a.dtype)
    if a.size:
        out.copy_to_device(a)
    return out
