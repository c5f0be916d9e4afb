"""The one decorator every CPU kernel is compiled with.

Kernels are cached on disk (compiling the full set takes tens of seconds, loading it under one).
Numba's own cache lives next to the source file, which fails for a read-only installation, and it
does not notice edits to a helper imported from another module. We therefore point the kernels'
cache at a user-writable directory whose name is keyed on the library version and on the size and
modification time of every kernel source file, so that any edit gives a fresh cache.

The cache directory
-------------------
Numba's index (``*.nbi``) and data (``*.nbc``) files are pickles: whoever can write the cache can
run code in every process that loads a kernel. The candidates for the cache root are, in order,
``TAGGER_CACHE_DIR``, the user cache directory (``~/.cache/tagger`` or the platform's equivalent)
and ``<tempdir>/tagger-cache-<uid>``; the cache itself is the keyed directory
``<root>/numba-<numba version>-<key>`` (and Numba's subdirectory in it). Every directory created
here is created with mode 0700. On POSIX a root or keyed directory is used only if

* it is a directory owned by the current user, and so is a symbolic link leading to it (``lstat``
  and ``stat`` must both show our uid: a link planted in ``/tmp`` by someone else is refused,
  whatever it points to), and
* neither its group nor others may write to it.

A directory that fails either test is refused, never repaired: ``chmod`` cannot undo what others
may already have placed in it, and tightening a directory the user named (``TAGGER_CACHE_DIR=/tmp``
run as root, a shared team directory) would break other users of it. Directories from older
versions were created 0755, which passes. A refused root or keyed directory makes us try the next
root; when none qualifies, kernels compile in memory and one :class:`KernelCacheWarning` says why.

Unreadable entries
------------------
Numba 0.68 lets the error of a truncated or garbled cache file (``UnpicklingError``, ``EOFError``)
propagate out of the first call of the kernel, in every run until someone deletes the file. Our
dispatchers get their own subclass of Numba's cache (:class:`_KernelCache`; other libraries'
caches are untouched) that treats any failure to load an entry as a damaged entry: its index and
data files are removed, the kernel is compiled again and re-cached, and the process gets one
:class:`KernelCacheWarning` naming the directory (one in all, however many entries were bad). A
failure to write an entry likewise costs a warning, not the run.

Inner kernels
-------------
Numba compiles a function that a kernel calls as a library of its own, optimizes that library's
module in full (inlining, loop vectorization), then links it into the caller's module and
optimizes the whole again in full: a helper two calls deep is optimized three times. A kernel
declared *inner* (called only from other kernels: by default one whose name starts with an
underscore) therefore gets only Numba's cheap module pass (the one it runs before the full one)
when it is compiled inside another kernel; its function-level optimizations still run, and the
caller's full pass optimizes it once, after inlining. Called from Python (a test), an inner kernel
compiles in full. This cuts the quickstart's compile time by about a third
(``benchmarks/bench_startup.py``); ``TAGGER_CHEAP_INNER=0`` turns it off.

Which copy of a helper runs
---------------------------
Numba links a helper into its caller as a *weak* definition (``linkonce_odr``), and every
library's code is loaded into one process-wide JIT linker, which binds a call to a weak symbol to
the first definition of that name it has seen. A helper the caller did not inline was therefore
run from whichever library was loaded first: in the process that compiled the kernel, the
helper's own library (loaded before its caller; with the cheap pass above, code never vectorized:
the CRF marginals ran 1.8 times slower than the same kernel loaded from the cache), and in a
process that loaded kernels from the cache, another kernel's copy of the helper whenever two
libraries' copies had the same name. Under fast-math flags two copies can round differently, so
a kernel's results depended on what the process had compiled or loaded before it (one unit in the
last place in the CRF's marginals). The final module of every kernel compiled here (a kernel
called from Python, or a kernel that is not inner compiled inside another) therefore makes every
weak definition linked into it private to it (``private`` linkage: no symbol in the object at
all) before it is optimized: its calls run its own copies, compiled or loaded, whatever else the
process holds. ``internal`` linkage is not enough: the JIT linker registers a module's internal
functions by name too, and the optimizer may change an internal function's arguments, so a
helper loaded later (a test calling ``gemm_cpu.matmul_packed`` after an LSTM kernel was loaded)
had its call bound to the kernel's altered copy and crashed. A library that links such a module
in gets its private copies along with it. A Numba whose code generator is organised otherwise
is left as it is (neither this nor the cheap pass is applied).

Processes that compile at once
------------------------------
Two processes that need the same kernel at the same time (a training and the process that
compiles ahead of it, :mod:`tagger.kernels.ahead`; two commands started together) would both
compile it. A cache miss therefore takes an exclusive lock on a file named after the kernel and
its signature (``<cache>/.locks/``, POSIX ``flock``) before compiling, and looks in the cache once
more when it gets the lock: the second process waits for the first and loads its result. The
lock is let go once the entry is written, or when the compilation fails; the system lets it go
when a process dies. Nested compilations lock their own kernels: the call graph of kernels has no
cycles, so two processes cannot wait on each other. A wait longer than :data:`LOCK_WAIT_SECONDS`
gives up and compiles anyway.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import sys
import tempfile
import threading
import time
import types
import warnings
from pathlib import Path

import llvmlite.binding as ll
import numba
from numba.core import caching
from numba.core import event as numba_event

from .. import _config
from .._version import __version__

_KERNEL_DIR = Path(__file__).resolve().parent
_POSIX = hasattr(os, "getuid")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process compile locks
    fcntl = None

#: How long a cache miss waits for another process compiling the same kernel (the largest kernel
#: compiles in about 10 s on a busy 2-core machine); then it compiles the kernel itself.
LOCK_WAIT_SECONDS = 120.0


class KernelCacheWarning(RuntimeWarning):
    """The on-disk kernel cache is off, or one of its entries was discarded and rebuilt."""


_warned = False


def _warn_once(message: str) -> None:
    """One :class:`KernelCacheWarning` per process: later cache troubles stay silent."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, KernelCacheWarning, stacklevel=2)


def _default_cache_root() -> Path:
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tagger"


def _temp_cache_root() -> Path:
    name = f"tagger-cache-{os.getuid()}" if _POSIX else "tagger-cache"
    return Path(tempfile.gettempdir()) / name


def _source_key() -> str:
    digest = hashlib.sha1(__version__.encode())
    for path in sorted(_KERNEL_DIR.glob("*.py")):
        stat_ = path.stat()
        digest.update(f"{path.name}:{stat_.st_size}:{stat_.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _refusal(directory: Path) -> str | None:
    """Why ``directory`` may not hold compiled kernels, or None when it may (see the module
    docstring)."""
    try:
        link = os.lstat(directory)
        target = os.stat(directory)
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    if not stat.S_ISDIR(target.st_mode):
        return "is not a directory"
    if not _POSIX:
        return None
    uid = os.getuid()
    for info in (link, target):
        if info.st_uid != uid:
            return f"is owned by uid {info.st_uid}, not by uid {uid}"
    if target.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(target.st_mode):o})"
    return None


def _private_dir(directory: Path) -> str | None:
    """Create ``directory`` and its missing parents with mode 0700 unless it exists; then the
    reason it may not be used (see :func:`_refusal`, or not writable), or None when it may."""
    missing = []
    path = directory
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # another process was quicker: inspected below
            pass
        except OSError as exc:
            return f"cannot be created ({exc.strerror})"
    reason = _refusal(directory)
    if reason is None:
        try:
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as exc:
            reason = f"is not writable ({exc.strerror})"
    return reason


def _resolve_cache_dir() -> str | None:
    """The directory for compiled kernels, or None when caching is off or no candidate qualifies
    (then with a :class:`KernelCacheWarning` that lists why each was refused)."""
    if not _config.CACHE:
        return None
    key = f"numba-{numba.__version__}-{_source_key()}"
    roots = [Path(_config.CACHE_DIR)] if _config.CACHE_DIR else []
    roots += [_default_cache_root(), _temp_cache_root()]
    refused = []
    for root in roots:
        for directory in (root, root / key):
            reason = _private_dir(directory)
            if reason is not None:
                refused.append(f"{directory} {reason}")
                break
        else:
            return str(root / key)
    message = "tagger: the on-disk kernel cache is off, kernels are compiled in memory: "
    _warn_once(message + "; ".join(refused))
    return None


CACHE_DIR: str | None = _resolve_cache_dir()


class _KernelCacheLocator(caching.UserProvidedCacheLocator):
    """Numba's locator for a user-given cache directory, pointed at :data:`CACHE_DIR` (instead of
    ``numba.config.CACHE_DIR``), whose per-source subdirectory is held to the same rules."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(CACHE_DIR, self.get_suitable_cache_subpath(py_file))

    def ensure_cache_path(self):
        reason = _private_dir(Path(self._cache_path))
        if reason is not None:
            raise PermissionError(f"{self._cache_path} {reason}")

    @classmethod
    def from_function(cls, py_func, py_file):
        if CACHE_DIR is None:
            return None
        # Skip UserProvidedCacheLocator's test of numba.config.CACHE_DIR.
        return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_KernelCacheLocator]

    def __init__(self, py_func):
        # NUMBA_CACHE_LOCATOR_CLASSES would replace the locator list; the kernels keep theirs.
        saved = getattr(numba.config, "CACHE_LOCATOR_CLASSES", "")
        numba.config.CACHE_LOCATOR_CLASSES = ""
        try:
            super().__init__(py_func)
        finally:
            numba.config.CACHE_LOCATOR_CLASSES = saved


class _KernelCache(caching.FunctionCache):
    """Numba's function cache in :data:`CACHE_DIR`; an entry that fails to load or save is
    removed (the kernel is compiled afresh and cached again) and costs one warning, not the run."""

    _impl_class = _KernelCacheImpl

    def load_overload(self, sig, target_context):
        data = self._load_checked(sig, target_context)
        if data is not None or fcntl is None:
            return data
        # A miss: compile under this kernel's lock, unless another process has just done it.
        fd = self._lock_file(sig)
        if fd is None:
            return None
        if not _try_lock(fd):
            if _SKIP_BUSY and not _COMPILING.stack:
                os.close(fd)
                raise KernelBusy(f"{self._impl.filename_base} is being compiled elsewhere")
            _wait_lock(fd)
        # Under the lock: another process may have written the entry since the first look.
        data = self._load_checked(sig, target_context)
        if data is not None:
            os.close(fd)  # closing lets the lock go
            return data
        _HELD.stack.append((self, fd))
        return None

    def _load_checked(self, sig, target_context):
        target_context.refresh()
        try:
            return self._load_overload(sig, target_context)
        except Exception as exc:  # unpickling garbage can raise almost anything
            self._discard(exc, "an unreadable entry was removed; the kernel is compiled afresh")
            return None

    def _lock_file(self, sig) -> int | None:
        """An open descriptor of the lock file of this kernel and ``sig`` (None when the lock
        directory cannot be used: then the kernel is compiled without a lock)."""
        folder = os.path.join(self._cache_path, ".locks")
        digest = hashlib.sha1(str(sig).encode()).hexdigest()[:20]
        path = os.path.join(folder, f"{self._impl.filename_base}-{digest}.lock")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                           | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError:
            return None

    def save_overload(self, sig, data):
        try:
            self._save_overload(sig, data)
        except Exception as exc:  # the kernel is compiled; only caching it failed
            self._discard(exc, "an entry could not be written and was removed")
        finally:
            _release_held(self)

    def _discard(self, exc: Exception, outcome: str) -> None:
        """Remove this function's index and data files, and warn (once per process)."""
        base = self._impl.filename_base
        data = glob.glob(os.path.join(glob.escape(self._cache_path), glob.escape(base) + ".*.nbc"))
        for path in [os.path.join(self._cache_path, base + ".nbi"), *data]:
            try:
                os.unlink(path)
            except OSError:
                pass
        message = (f"tagger: kernel cache in {self._cache_path}: {outcome} "
                   f"({base}: {type(exc).__name__}: {exc})")
        _warn_once(message)


class KernelBusy(RuntimeError):
    """Raised, in a process that compiles ahead (see :func:`skip_busy_kernels`), for a kernel
    that another process is compiling."""


_SKIP_BUSY = False


def skip_busy_kernels() -> None:
    """From now on, a kernel called from Python whose compilation another process holds raises
    :class:`KernelBusy` instead of waiting (for the process that compiles ahead of a training:
    the training compiles that kernel itself, and this process moves on to the next one)."""
    global _SKIP_BUSY
    _SKIP_BUSY = True


class _Held(threading.local):
    def __init__(self):
        self.stack: list = []  # (cache, descriptor) of the locks this thread holds, innermost last


class _Compiling(threading.local):
    def __init__(self):
        self.stack: list = []  # the dispatchers this thread is compiling, innermost last


_HELD = _Held()
_COMPILING = _Compiling()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _wait_lock(fd: int) -> None:
    """Wait for the lock on ``fd`` (polling: a blocked ``flock`` cannot time out); after
    :data:`LOCK_WAIT_SECONDS`, go on without it."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.002
    while not _try_lock(fd):
        if time.monotonic() > deadline:
            return
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _release_held(cache) -> None:
    """Let go of the innermost lock this thread holds if it is ``cache``'s."""
    stack = _HELD.stack
    if stack and stack[-1][0] is cache:
        os.close(stack.pop()[1])


class _LockKeeper(numba_event.Listener):
    """Keeps the stack of the compilations under way in each thread, and lets go of a kernel's
    lock when its compilation fails (a successful one lets go after its entry is saved)."""

    def on_start(self, event) -> None:
        _COMPILING.stack.append((event.data or {}).get("dispatcher"))

    def on_end(self, event) -> None:
        _COMPILING.stack.pop()
        # Numba 0.68's Event.is_failed answers the opposite question: read the exception.
        if getattr(event, "_exc_details", None) is not None:
            dispatcher = (event.data or {}).get("dispatcher")
            cache = getattr(dispatcher, "_cache", None)
            if cache is not None:
                _release_held(cache)


numba_event.register("numba:compile", _LockKeeper())


#: Numba's own final optimization of a library's module (set when ours is installed).
_full_module_optimizer = None


def _cheap_module_optimizer(library) -> None:
    """Numba's cheap module pass alone, on ``library``'s final module."""
    codegen = library._codegen
    manager, builder = codegen._module_pass_manager(
        loop_vectorize=codegen._loopvect, slp_vectorize=False, opt=codegen._opt_level,
        cost="cheap")
    manager.run(library._final_module, builder)


def _privatize_linked_functions(module) -> None:
    """Make every weak function definition (``linkonce_odr``: what Numba links in from another
    library) of ``module`` private to it, with no symbol at all (see "Which copy of a helper
    runs")."""
    for function in module.functions:
        if not function.is_declaration and function.linkage == ll.Linkage.linkonce_odr:
            function.linkage = "private"


def _optimize_final_module(library) -> None:
    """What replaces Numba's ``CPUCodeLibrary._optimize_final_module``: the cheap pass alone for
    an inner kernel compiled inside another (see "Inner kernels" above); for the other kernels,
    the helpers linked in made private, then Numba's full optimization; other libraries as Numba
    does."""
    stack = _COMPILING.stack
    kernel_ = stack[-1] if stack else None
    if hasattr(kernel_, "_tagger_inner"):
        if len(stack) >= 2 and kernel_._tagger_inner:
            if _config.CHEAP_INNER_KERNELS:
                try:
                    _cheap_module_optimizer(library)
                    return
                except Exception:  # noqa: S110 - another Numba's internals: optimize as it would
                    pass
        else:
            _privatize_linked_functions(library._final_module)
    _full_module_optimizer(library)


def _install_final_module_optimizer() -> None:
    global _full_module_optimizer
    from numba.core import codegen

    library_class = getattr(codegen, "CPUCodeLibrary", None)
    original = getattr(library_class, "_optimize_final_module", None)
    if original is None or original is _optimize_final_module or \
            not hasattr(getattr(codegen, "CPUCodegen", None), "_module_pass_manager"):
        return  # a Numba whose code generator is organised otherwise: left as it is
    _full_module_optimizer = original
    library_class._optimize_final_module = _optimize_final_module


_install_final_module_optimizer()


class _CompileClock(numba_event.Listener):
    """Wall time this process has spent compiling (not loading) jitted functions, counted once
    for nested compilations, and callbacks told when a compilation starts and ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._started = 0.0
        self.seconds = 0.0
        self.callbacks: list = []

    def on_start(self, event) -> None:
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            self._started = time.perf_counter()
        for callback in list(self.callbacks):
            callback(True)

    def on_end(self, event) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0:
                return
            self.seconds += time.perf_counter() - self._started
        for callback in list(self.callbacks):
            callback(False)


_CLOCK = _CompileClock()
# Numba raises the event around real compilations only: loading a kernel from the on-disk cache
# is not counted.
numba_event.register("numba:compile", _CLOCK)


def compile_seconds() -> float:
    """Seconds this process has spent compiling kernels so far (loading them from the cache is
    not compiling). Training subtracts them from its throughput figures."""
    return _CLOCK.seconds


def on_compile(callback) -> None:
    """Call ``callback(started)`` whenever a compilation starts (True) or ends (False), from the
    thread that compiles; for progress displays ("compiling kernels ...")."""
    _CLOCK.callbacks.append(callback)


def remove_on_compile(callback) -> None:
    """Undo :func:`on_compile`."""
    if callback in _CLOCK.callbacks:
        _CLOCK.callbacks.remove(callback)


def kernel(parallel: bool = False, inner: bool | None = None, **options):
    """``numba.njit`` with the project's fast-math flags and on-disk cache.

    Parameters
    ----------
    parallel : bool
        Compile with ``parallel=True`` (``prange`` loops run on Numba's thread pool).
    inner : bool, optional
        Whether the kernel is called only from other kernels (see "Inner kernels" above); by
        default, whether its name starts with an underscore.
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
        dispatcher = numba.njit(cache=False, **opts)(func)
        dispatcher._tagger_inner = func.__name__.startswith("_") if inner is None else inner
        if CACHE_DIR is not None:
            # What njit(cache=True) does, with our cache class: every other library's numba
            # caching is left alone.
            try:
                dispatcher._cache = _KernelCache(dispatcher.py_func)
            except RuntimeError as exc:  # no locator: the directory became unusable since
                message = f"tagger: the on-disk kernel cache in {CACHE_DIR} is not used ({exc})"
                _warn_once(message)
        return dispatcher

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
