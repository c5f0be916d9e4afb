"""Device selection and the kernel set of each device.

``resolve_device("auto" | "cpu" | "cuda")`` decides where the engine runs:

* ``TAGGER_DEVICE`` in the environment overrides what the caller asked for;
* ``"cuda"`` needs a usable GPU: numba-cuda importable, ``numba.cuda.is_available()`` true, and a
  tiny kernel that launches and returns the right answer (this catches a missing toolkit or an
  old driver); otherwise a clear error says why;
* ``"auto"`` takes the GPU when it is usable, else the CPU, with one warning per process when
  the CUDA toolkit wheels are installed (``pip install 'tagger[cuda]'``) but no GPU can be used.

numba-cuda is imported lazily, here only: a CPU run never loads it. All GPU code lives in
``tagger/kernels/*_cuda.py`` and reaches the engine through :func:`kernels`.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import os
import sys
import threading
import warnings
from types import SimpleNamespace

DEVICES = ("auto", "cpu", "cuda")

_lock = threading.Lock()
_probe: tuple[bool, str] | None = None
_warned = False


def _probe_cuda() -> tuple[bool, str]:
    """(usable, reason) for the GPU, computed once per process."""
    global _probe
    with _lock:
        if _probe is not None:
            return _probe
        # Without numba-cuda (the kernels need it, not numba's deprecated built-in target) there
        # is nothing to probe: answer without importing anything (CPU start-up stays fast).
        if importlib.util.find_spec("numba_cuda") is None:
            _probe = (False, "numba-cuda is not installed (pip install 'tagger[cuda]')")
            return _probe
        # Without a driver library there is no GPU either: answer before importing numba-cuda,
        # which alone costs about 0.3 s of every start-up.
        if not _driver_present():
            _probe = (False, "no CUDA GPU or driver was found")
            return _probe
        try:
            from numba import cuda
        except ImportError:
            _probe = (False, "numba-cuda is not installed (pip install 'tagger[cuda]')")
            return _probe
        try:
            if not cuda.is_available():
                _probe = (False, "no CUDA GPU or driver was found")
                return _probe
            import numpy as np

            from .rnn_cuda import smoke_kernel

            out = cuda.device_array(4, np.int64)
            smoke_kernel[1, 4](out)
            if out.copy_to_host().tolist() != [1, 2, 3, 4]:
                raise RuntimeError("a test kernel returned wrong results")
            _probe = (True, "")
        except Exception as exc:  # toolkit missing, driver too old, ...
            _probe = (False, _probe_failure(exc))
        return _probe


def _probe_failure(exc: BaseException) -> str:
    """Why the test kernel failed, in one line, with the remedy where it is known."""
    text = str(exc).strip()
    reason = (f"a test kernel could not run on the GPU ({type(exc).__name__}: "
              f"{text.splitlines()[0] if text else exc})")
    if isinstance(exc, AttributeError) and text.startswith("module 'numpy' has no attribute"):
        # numba-cuda 0.30 registers its typing of np.row_stack, which NumPy 2.5 removed, when
        # it compiles a first kernel.
        import numpy as np

        reason += (f"; this numba-cuda does not support NumPy {np.__version__}: install an "
                   f"older NumPy (pip install 'numpy<2.5') or a numba-cuda that supports it")
    return reason


def _driver_present() -> bool:
    """Whether the CUDA driver library loads (a dlopen, a few milliseconds). Under the CUDA
    simulator, or with ``NUMBA_CUDA_DRIVER`` naming a driver, numba-cuda decides instead."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0") or \
            os.environ.get("NUMBA_CUDA_DRIVER"):
        return True
    if sys.platform == "win32":
        names = ("nvcuda.dll",)
    elif sys.platform == "darwin":
        names = ("libcuda.dylib",)
    else:
        names = ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def cuda_usable() -> bool:
    """Whether the GPU can run the engine's kernels."""
    return _probe_cuda()[0]


def resolve_device(requested: str = "auto", auto_gpu: bool = True) -> str:
    """``"cpu"`` or ``"cuda"``: where to run, given the request and ``TAGGER_DEVICE``.

    ``auto_gpu=False`` makes "auto" mean the CPU, for a model that runs faster there (an
    explicit "cuda", here or in ``TAGGER_DEVICE``, still takes the GPU).

    Raises
    ------
    ValueError
        An unknown device name.
    RuntimeError
        ``"cuda"`` without a usable GPU, saying why.
    """
    global _warned
    override = os.environ.get("TAGGER_DEVICE", "").strip().lower()
    if override:
        if override not in DEVICES:
            raise ValueError(f"TAGGER_DEVICE must be one of {', '.join(DEVICES)}, got "
                             f"{override!r}")
        requested = override
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cpu" or (requested == "auto" and not auto_gpu):
        return "cpu"
    usable, reason = _probe_cuda()
    if usable:
        return "cuda"
    if requested == "cuda":
        raise RuntimeError(f"device='cuda' was requested, but {reason}; use device='cpu' or "
                           f"'auto'")
    if not _warned and _gpu_intended():
        _warned = True
        warnings.warn(f"running on the CPU: {reason}", RuntimeWarning, stacklevel=2)
    return "cpu"


def _gpu_intended() -> bool:
    """Whether the CUDA toolkit wheels are installed (the ``[cuda]`` extra): then a missing GPU
    is worth a warning. numba-cuda alone, as the test extras install it for the simulator, is
    not a sign that a GPU was expected."""
    try:
        return importlib.util.find_spec("nvidia.cuda_nvrtc") is not None
    except (ImportError, ValueError):
        return False


def _on_device(fn):
    """Wrap a CUDA kernel function so that it takes and fills NumPy arrays: every array goes to
    the device once and comes back once (results written into the caller's arrays)."""

    @functools.wraps(fn)
    def call(*args):
        import numpy as np
        from numba import cuda

        moved = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
                 for a in args]
        fn(*moved)
        for original, device_array in zip(args, moved, strict=True):
            if isinstance(original, np.ndarray) and original.flags.writeable and \
                    original.flags.c_contiguous:
                device_array.copy_to_host(original)

    return call


@functools.cache
def kernels(device: str, family: str):
    """The kernel module of ``family`` ("rnn", "crf", "pool") for ``device``, as an object whose
    functions take NumPy arrays (the CUDA ones copy them over and back)."""
    if device == "cpu":
        return importlib.import_module(f"tagger.kernels.{family}_cpu")
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}")
    module = importlib.import_module(f"tagger.kernels.{family}_cuda")
    public = {name: _on_device(getattr(module, name)) for name in dir(module)
              if not name.startswith("_") and callable(getattr(module, name))
              and getattr(getattr(module, name), "__module__", "") == module.__name__}
    return SimpleNamespace(**public)
