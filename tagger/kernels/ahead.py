"""Compiling ahead: a second process compiles the kernels a training will need while the
training compiles them too, from the other end of the list.

On a new machine the first training spends most of its first minute compiling kernels, one
after another, on one core. :func:`start` forks a process that first finds which kernels (and
signatures) the training will call, by running a rehearsal of its first step and of its
development scoring in which no kernel is compiled or run (each call is only recorded: its
outputs stay as they were allocated, and whatever the rehearsal does with them afterwards does
not matter). It then compiles them from the last called to the first, while the training
compiles from the first. The on-disk cache's per-kernel locks (:mod:`tagger.kernels._jit`) keep
the two from compiling the same kernel: the training waits for one the other process is
compiling and loads it from the cache, and the other process skips one the training holds.

Only where it helps and is safe: on Linux, in a process with no other Python thread, when the
on-disk cache is on and looks new (few entries), and unless ``TAGGER_COMPILE_AHEAD=0``. The
forked process never runs a kernel, writes nothing but cache entries, ignores Ctrl-C (the
training's own handling stays in charge), ends with the training and is reaped by
:func:`finish`.
"""

from __future__ import annotations

import ctypes
import glob
import os
import signal
import sys
import threading
import warnings

from . import _jit

#: Fewer entries than this in the kernel cache: a new cache, worth compiling ahead for.
_NEW_CACHE_ENTRIES = 8


def wanted() -> bool:
    """Whether :func:`start` would fork: ``TAGGER_COMPILE_AHEAD`` is "1", or it is unset and the
    cache is on, new, and ``fork`` is available."""
    setting = os.environ.get("TAGGER_COMPILE_AHEAD", "")
    if setting == "0" or not hasattr(os, "fork") or _jit.fcntl is None:
        return False
    if threading.active_count() > 1:
        # Another thread may hold a lock at the fork, which the forked process would then
        # wait on forever (a web server, a Dask worker): no fork there.
        return False
    if _jit.CACHE_DIR is None or sys.platform != "linux":
        return False
    if setting == "1":
        return True
    entries = glob.glob(os.path.join(glob.escape(_jit.CACHE_DIR), "**", "*.nbi"),
                        recursive=True)
    return len(entries) < _NEW_CACHE_ENTRIES


def _skip(*args, **kws) -> None:
    return None


def _record_calls(rehearse) -> list:
    """Run ``rehearse`` with every kernel call recorded instead of compiled and run: the
    (dispatcher, argument types) of each first call of a kernel not compiled yet, in order."""
    from numba.core import types
    from numba.core.dispatcher import Dispatcher, OmittedArg

    calls: list = []
    lock = threading.Lock()

    def record(self, *args, **kws):
        argtypes = tuple(types.Omitted(a.value) if isinstance(a, OmittedArg)
                         else self.typeof_pyval(a) for a in args)
        with lock:
            if (self, argtypes) not in calls:
                calls.append((self, argtypes))
        return _skip  # what the dispatcher calls instead: the caller's outputs stay as they were

    original = Dispatcher._compile_for_args
    Dispatcher._compile_for_args = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arithmetic on never-written arrays
            try:
                rehearse()
            except Exception:
                pass  # what was recorded until then is still worth compiling
    finally:
        Dispatcher._compile_for_args = original
    return calls


def start(rehearse) -> int | None:
    """Fork the process that compiles ahead; returns its pid (None when it is not wanted).

    Parameters
    ----------
    rehearse : callable
        Calls, in the training's order, the code whose kernels the training will need (a
        training step on a small batch, the development scoring); any exception it raises
        ends the rehearsal.
    """
    if not wanted():
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    # The forked process: compile, never run; leave the terminal and signals to the training.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:  # end with the training, however it ends (Linux: PR_SET_PDEATHSIG)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        calls = _record_calls(rehearse)
        _jit.skip_busy_kernels()
        for dispatcher, argtypes in reversed(calls):
            try:
                dispatcher.compile(argtypes)
            except Exception:  # noqa: S112 - busy (the training has it) or failed there
                continue
    finally:
        os._exit(0)


def finish(pid: int | None) -> None:
    """End the process :func:`start` forked (if still compiling, its remaining kernels are not
    needed any more) and reap it."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
