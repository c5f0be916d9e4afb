"""The one decorator every CPU kernel is compiled with.

Kernels are cached on disk (compiling the full set takes tens of seconds, loading it under one).
Numba's own cache lives next to the source file, which fails for a read-only installation, and it
does not notice edits to a helper imported from another module. We therefore point the kernels'
cache at a user-writable directory whose name is keyed on the library version and on the size and
modification time of every kernel source file, so that any edit gives a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import types
from pathlib import Path

import numba

from .. import _config
from .._version import __version__

_KERNEL_DIR = Path(__file__).resolve().parent


def _default_cache_root() -> Path:
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tagger"


def _source_key() -> str:
    digest = hashlib.sha1(__version__.encode())
    for path in sorted(_KERNEL_DIR.glob("*.py")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
        return True
    except OSError:
        return False


def _resolve_cache_dir() -> str | None:
    """The directory for compiled kernels, or None when caching is off or nothing is writable."""
    if not _config.CACHE:
        return None
    key = f"numba-{numba.__version__}-{_source_key()}"
    roots = [Path(_config.CACHE_DIR)] if _config.CACHE_DIR else []
    roots += [_default_cache_root(), Path(tempfile.gettempdir()) / f"tagger-cache-{os.getuid()}"]
    for root in roots:
        if _writable(root / key):
            return str(root / key)
    return None


CACHE_DIR: str | None = _resolve_cache_dir()


def kernel(parallel: bool = False, **options):
    """``numba.njit`` with the project's fast-math flags and on-disk cache.

    Parameters
    ----------
    parallel : bool
        Compile with ``parallel=True`` (``prange`` loops run on Numba's thread pool).
    **options
        Further ``numba.njit`` options.

    Returns
    -------
    callable
        A decorator.
    """

    def decorate(func):
        # error_model="numpy": division by zero gives inf/nan instead of raising, which drops the
        # zero test before every division and lets LLVM vectorize loops that divide.
        opts = {"fastmath": set(_config.FASTMATH), "nogil": True, "parallel": parallel,
                "error_model": "numpy"}
        opts.update(options)
        if CACHE_DIR is None:
            return numba.njit(cache=False, **opts)(func)
        # Numba fixes a function's cache path when caching is enabled, i.e. right here; overriding
        # the global setting only for this decoration leaves every other library's cache alone.
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR
        try:
            return numba.njit(cache=True, **opts)(func)
        finally:
            numba.config.CACHE_DIR = saved

    return decorate


def serial_twin(dispatcher):
    """The parallel kernel ``dispatcher`` compiled once more without ``parallel=True``: its
    ``prange`` loops run as plain loops on the calling thread.

    For callers that parallelise above the kernel (several Python threads, each calling kernels
    on one Numba thread): a serial kernel runs under every threading layer from any number of
    threads at once, while the workqueue layer aborts on concurrent parallel launches, and a
    parallel launch costs a few microseconds even on one thread. The twin is named
    ``<name>_serial`` and cached under that name.
    """
    func = dispatcher.py_func
    name = func.__name__ + "_serial"
    twin = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__,
                              func.__closure__)
    twin.__qualname__ = func.__qualname__ + "_serial"
    twin.__module__ = func.__module__
    twin.__doc__ = f"Serial twin of :func:`{func.__name__}` (see :func:`serial_twin`)."
    return kernel()(twin)
