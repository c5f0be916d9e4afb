"""Where compiled kernels are cached, and when the cache is renewed."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numba
import pytest

from tagger import _config
from tagger.kernels import _jit


def test_cache_key_changes_when_any_kernel_source_changes(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(_jit, "_KERNEL_DIR", tmp_path)
    first = _jit._source_key()
    assert _jit._source_key() == first
    later = time.time() + 10
    os.utime(tmp_path / "b.py", (later, later))  # an edit to a helper module
    assert _jit._source_key() != first


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_cache_root_falls_back_to_a_writable_one(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setattr(_config, "CACHE_DIR", str(locked))
    resolved = _jit._resolve_cache_dir()
    assert resolved is not None and not resolved.startswith(str(locked))


def test_unwritable_cache_root_falls_back(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(_config, "CACHE_DIR", str(blocker))
    resolved = _jit._resolve_cache_dir()
    assert resolved is not None and not resolved.startswith(str(blocker))


def test_cache_dir_is_keyed_and_configurable(tmp_path, monkeypatch):
    monkeypatch.setattr(_config, "CACHE_DIR", str(tmp_path))
    resolved = _jit._resolve_cache_dir()
    assert resolved.startswith(str(tmp_path)) and _jit._source_key() in resolved


def test_caching_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(_config, "CACHE", False)
    assert _jit._resolve_cache_dir() is None


def test_kernels_are_compiled_with_the_project_options():
    from tagger.kernels import rnn_cpu

    options = rnn_cpu.lstm_forward.targetoptions
    assert options["error_model"] == "numpy" and options["nogil"]
    assert "nnan" not in options["fastmath"] and "ninf" not in options["fastmath"]
    assert rnn_cpu.lstm_forward._cache.cache_path.startswith(str(_jit.CACHE_DIR))


# A fresh process per run: the cache directory is decided, and entries are loaded, on import and
# first call. ``sum_squares`` and its serial twin are two small cached kernels.
_SCRIPT = """
import numpy as np
from tagger.kernels import _jit, optim_cpu
print(_jit.CACHE_DIR)
if __import__("sys").argv[1:] == ["run"]:
    twin = _jit.serial_twin(optim_cpu.sum_squares)
    x = np.arange(4.0)
    print(optim_cpu.sum_squares(x), twin(x))
    print(sum(optim_cpu.sum_squares.stats.cache_hits.values())
          + sum(twin.stats.cache_hits.values()))
"""
_OTHER_UID = 12345
_as_root = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                              reason="giving a directory to another user needs root")


def _run(tmp_path, cache_dir, *args, script=_SCRIPT):
    """Run ``script`` with ``cache_dir`` as TAGGER_CACHE_DIR and the other candidate roots
    (XDG_CACHE_HOME, TMPDIR) under ``tmp_path``; stdout lines and stderr."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, TAGGER_CACHE_DIR=str(cache_dir), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               TMPDIR=str(tmp_path / "tmp"), PYTHONWARNINGS="default")
    env.pop("TAGGER_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout.splitlines(), proc.stderr


def _warnings(stderr):
    return [line for line in stderr.splitlines() if "KernelCacheWarning" in line]


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _keyed(root):
    return Path(root) / f"numba-{numba.__version__}-{_jit._source_key()}"


def test_created_cache_directories_are_private(tmp_path):
    root = tmp_path / "missing" / "cache"
    lines, stderr = _run(tmp_path, root, "run")
    assert lines[0] == str(_keyed(root)) and lines[1] == "14.0 14.0" and not _warnings(stderr)
    created = [tmp_path / "missing", *(path for path in root.rglob("*") if path.is_dir())]
    assert len(created) >= 3  # the root's parent, the keyed directory, Numba's subdirectory
    assert {str(path): _mode(path) for path in [root, *created]} == {
        str(path): 0o700 for path in [root, *created]}
    assert any(root.rglob("*.nbi"))


@_as_root
def test_cache_root_of_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, _OTHER_UID, -1)
    lines, stderr = _run(tmp_path, theirs)
    assert lines[0] == str(_keyed(tmp_path / "xdg" / "tagger")) and not _warnings(stderr)
    assert not any(theirs.iterdir())


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777], ids=lambda mode: f"{mode:o}")
def test_cache_root_writable_by_others_is_refused_and_left_alone(tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    lines, _ = _run(tmp_path, shared)
    assert lines[0] == str(_keyed(tmp_path / "xdg" / "tagger"))
    assert not any(shared.iterdir()) and _mode(shared) == mode


@_as_root
def test_keyed_directory_of_another_user_or_a_foreign_link_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    _keyed(root).mkdir(mode=0o700)
    os.chown(_keyed(root), _OTHER_UID, -1)
    # The keyed directory of the next root is a link to a directory of another user.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.chown(elsewhere, _OTHER_UID, -1)
    (tmp_path / "xdg" / "tagger").mkdir(parents=True, mode=0o700)
    _keyed(tmp_path / "xdg" / "tagger").symlink_to(elsewhere)
    lines, _ = _run(tmp_path, root)
    assert lines[0] == str(_keyed(tmp_path / "tmp" / f"tagger-cache-{os.getuid()}"))
    assert not any(elsewhere.iterdir())


@_as_root
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the user cache root is fixed")
def test_without_a_private_directory_kernels_compile_in_memory_with_one_warning(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, _OTHER_UID, -1)
    (tmp_path / "xdg" / "tagger").mkdir(parents=True, mode=0o777)
    (tmp_path / "xdg" / "tagger").chmod(0o777)
    # A link planted in the temporary directory by another user, even to a directory of ours.
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    (tmp_path / "tmp").mkdir()
    planted = tmp_path / "tmp" / f"tagger-cache-{os.getuid()}"
    planted.symlink_to(ours)
    os.lchown(planted, _OTHER_UID, -1)
    lines, stderr = _run(tmp_path, theirs, "run")
    assert lines[:3] == ["None", "14.0 14.0", "0"]
    [warning] = _warnings(stderr)
    assert "in memory" in warning and "owned by uid 12345" in warning
    assert "writable by group or others" in warning
    assert not any(ours.iterdir()) and not any(theirs.iterdir())


def _truncate(path, size):
    path.write_bytes(path.read_bytes()[:size])


@pytest.mark.parametrize("damage", [
    pytest.param(lambda cache: [_truncate(path, 10) for path in cache.rglob("*.nbi")],
                 id="index-truncated"),
    pytest.param(lambda cache: [path.write_bytes(b"\x80\x05garbage" + bytes(range(256)))
                                for path in cache.rglob("*.nbi")], id="index-garbage"),
    pytest.param(lambda cache: [_truncate(path, path.stat().st_size // 2)
                                for path in cache.rglob("*.nbc")], id="data-truncated"),
])
def test_damaged_cache_entries_are_rebuilt_with_one_warning(tmp_path, damage):
    root = tmp_path / "cache"
    lines, stderr = _run(tmp_path, root, "run")
    assert lines[1:3] == ["14.0 14.0", "0"] and not _warnings(stderr)
    assert len(damage(root)) == 2  # both kernels' entries
    lines, stderr = _run(tmp_path, root, "run")
    assert lines[1:3] == ["14.0 14.0", "0"]
    [warning] = _warnings(stderr)
    assert str(_keyed(root)) in warning and "removed" in warning
    lines, stderr = _run(tmp_path, root, "run")  # both entries were written afresh
    assert lines[1:3] == ["14.0 14.0", "2"] and not _warnings(stderr)


def _uncached(dispatcher):
    from numba.core.caching import NullCache

    dispatcher._cache = NullCache()  # compiled afresh in every run of the tests
    return dispatcher


def test_inner_kernels_get_the_full_optimization_once_inside_their_caller(monkeypatch):
    """An inner kernel compiled inside another gets only the cheap module pass of its own; the
    kernel that calls it, and an inner kernel called from Python, get Numba's full one."""
    import numpy as np

    if _jit._full_module_optimizer is None or not _config.CHEAP_INNER_KERNELS:
        pytest.skip("the cheap inner optimization is off (TAGGER_CHEAP_INNER=0)")
    full, cheap = [], []
    real_full, real_cheap = _jit._full_module_optimizer, _jit._cheap_module_optimizer

    def spy_full(library):
        full.append(library.name)
        real_full(library)

    def spy_cheap(library):
        cheap.append(library.name)
        real_cheap(library)

    monkeypatch.setattr(_jit, "_full_module_optimizer", spy_full)
    monkeypatch.setattr(_jit, "_cheap_module_optimizer", spy_cheap)

    @_uncached
    @_jit.kernel()
    def _scaled_sum(x, a):
        s = 0.0
        for v in x:
            s += a * v
        return s

    @_uncached
    @_jit.kernel()
    def entry_kernel(x):
        return _scaled_sum(x, 2.0) + 1.0

    x = np.arange(5.0)
    assert entry_kernel(x) == 21.0
    assert any(name.endswith("_scaled_sum") for name in cheap), cheap
    assert not any(name.endswith("_scaled_sum") for name in full), full
    assert any(name.endswith("entry_kernel") for name in full), full
    assert not any(name.endswith("entry_kernel") for name in cheap), cheap

    # Called from Python, with a signature not compiled yet: the full optimization.
    del full[:], cheap[:]
    assert _scaled_sum(np.arange(3, dtype=np.float32), 1.0) == 3.0
    assert any(name.endswith("_scaled_sum") for name in full) and not cheap


def test_a_kernel_runs_its_own_copies_of_the_helpers_linked_into_it():
    """Helpers linked into a kernel are private to its module (private linkage: no symbol), so
    that a call never binds to another library's copy of the same name (see "Which copy of a
    helper runs")."""
    import llvmlite.binding as ll
    import numpy as np

    if _jit._full_module_optimizer is None:
        pytest.skip("this Numba's code generator is organised otherwise")

    @_uncached
    @_jit.kernel()
    def _weighted(x, a):
        s = 0.0
        for v in x:
            s += a * v * v
        return s

    @_uncached
    @_jit.kernel()
    def caller_kernel(x):
        return _weighted(x, 2.0) + _weighted(x[1:], 3.0)

    assert caller_kernel(np.arange(4.0)) == 28.0 + 42.0
    [result] = caller_kernel.overloads.values()
    module = result.library._final_module
    defined = [f for f in module.functions if not f.is_declaration]
    assert any(f.linkage == ll.Linkage.external for f in defined)  # its entry points
    shared = [f.name for f in defined
              if f.linkage not in (ll.Linkage.external, ll.Linkage.private)]
    assert not shared, shared
    assert any(f.linkage == ll.Linkage.private for f in defined)  # the helper's copy


_SAME_BITS = """
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_crf_kernels import random_problem
from tagger.kernels import crf_cpu
em, _, lengths, params, masks = random_problem(
    np.random.default_rng(90), 17, 12, 7, np.float64, masked=True)
marginals, log_z = np.empty_like(em), np.empty(em.shape[0])
crf_cpu.crf_marginals_serial(em, lengths, *params, *masks, marginals, log_z)
hits = sum(crf_cpu.crf_marginals_serial.stats.cache_hits.values())
print(hits, hashlib.sha256(marginals.tobytes() + log_z.tobytes()).hexdigest())
"""


def test_a_kernel_gives_the_same_bits_compiled_or_loaded_from_the_cache(tmp_path):
    """The process that compiles a kernel runs the code that later processes load from the cache
    (before its helpers were made private, the compiling process ran the helpers' own, cheaply
    optimized libraries: other code, other rounding, 1.8 times slower for these marginals)."""
    runs = [_run(tmp_path, tmp_path / "cache", str(Path(__file__).parent), script=_SAME_BITS)
            for _ in range(2)]
    (compiled_hits, compiled), (loaded_hits, loaded) = [lines[0].split() for lines, _ in runs]
    assert (compiled_hits, loaded_hits) == ("0", "1")
    assert compiled == loaded


_HELPER_AFTER_CALLER = """
import sys
import numpy as np
from tagger.kernels import gemm_cpu
from tagger.nn.recurrent import RNNStack
rng = np.random.default_rng(0)
stack = RNNStack("lstm", 10, 8, 1, bidirectional=False)
params = stack.init_params(rng)
stack.forward(params, rng.standard_normal((3, 5, 10)).astype(np.float32), np.full(3, 5, np.int64))
if sys.argv[1:] == ["helper"]:
    a = rng.standard_normal((9, 33)).astype(np.float32)
    m = rng.standard_normal((33, 47)).astype(np.float32)
    out = np.zeros((9, 47), np.float32)
    gemm_cpu.matmul_packed(a, 9, gemm_cpu.packed(m), 47, out)
    print(float(np.abs(out - a @ m).max()), sum(gemm_cpu.matmul_packed.stats.cache_hits.values()))
"""


def test_a_helper_loaded_after_a_kernel_that_holds_a_copy_of_it(tmp_path):
    """A process loads the LSTM kernel from the cache (with its private copy of the product
    helpers), then calls one of those helpers from Python, loaded from the cache too. The JIT
    linker registers even a module's internal functions by name: when the copies were merely
    internal, the helper's call to ``_micro`` ran the LSTM kernel's copy, whose arguments the
    optimizer had changed, and the process crashed; private copies have no name to bind to."""
    _run(tmp_path, tmp_path / "cache", script=_HELPER_AFTER_CALLER)
    lines, _ = _run(tmp_path, tmp_path / "cache", "helper", script=_HELPER_AFTER_CALLER)
    error, hits = lines[0].split()
    assert float(error) < 1e-4 and hits == "1"


def test_kernel_inner_flag_follows_the_name_unless_given():
    from tagger.kernels import crf_cpu, gemm_cpu, rnn_cpu

    assert crf_cpu._nll_sequence._tagger_inner and rnn_cpu._project_inputs._tagger_inner
    assert not crf_cpu.crf_nll_serial._tagger_inner and not rnn_cpu.lstm_forward._tagger_inner
    assert gemm_cpu.matmul_packed._tagger_inner  # public, but only kernels call it

    def _helper(x):
        return x

    assert not _jit.kernel(inner=False)(_helper)._tagger_inner


def _compiled_by_numba(node) -> bool:
    """A function whose body Numba compiles (a kernel, an overload, an intrinsic)."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = getattr(target, "id", None) or getattr(target, "attr", "")
        if name in ("kernel", "overload", "intrinsic", "register_jitable", "njit", "jit"):
            return True
    return False


def _inner_kernels(kernels: Path) -> dict:
    """The inner kernels of each CPU kernel module: {module name: names}."""
    inner = {}
    for path in kernels.glob("*_cpu.py"):
        names = inner.setdefault(path.stem, set())
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or not _compiled_by_numba(node):
                continue
            given = {kw.arg: kw.value for d in node.decorator_list
                     if isinstance(d, ast.Call) for kw in d.keywords}.get("inner")
            if given.value if isinstance(given, ast.Constant) else node.name.startswith("_"):
                names.add(node.name)
    return inner


def _inner_bindings(tree, module: str, inner: dict) -> tuple[set, dict]:
    """The names that stand for an inner kernel in a module (its own, or imported), and the
    names bound to a kernel module (-> its inner kernels)."""
    names = set(inner.get(module, ()))
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = (node.module or "").rsplit(".", 1)[-1]
            for alias in node.names:
                if source in inner and alias.name in inner[source]:
                    names.add(alias.asname or alias.name)
                elif alias.name in inner:  # from ..kernels import rnn_cpu
                    modules[alias.asname or alias.name] = inner[alias.name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                stem = alias.name.rsplit(".", 1)[-1]
                if stem in inner and alias.asname:
                    modules[alias.asname] = inner[stem]
    return names, modules


def test_no_python_code_calls_an_inner_kernel():
    """Inner kernels are compiled to be optimized inside their callers (see the test above):
    Python code anywhere in the package calls only the others."""
    kernels = Path(_jit.__file__).parent
    inner = _inner_kernels(kernels)
    assert {"_nll_sequence", "_prepared"} <= inner["crf_cpu"]
    assert {"_project_inputs", "_times_u"} <= inner["rnn_cpu"]
    assert "matmul_packed" in inner["gemm_cpu"]
    offenders = []

    def visit(node, path, names, modules):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    _compiled_by_numba(child):
                continue  # Numba compiles it: calls in it are calls between kernels
            if isinstance(child, ast.Call):
                func = child.func
                if (isinstance(func, ast.Name) and func.id in names) or (
                        isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                        and func.attr in modules.get(func.value.id, ())):
                    offenders.append(f"{path.name}:{child.lineno}")
            visit(child, path, names, modules)

    for path in kernels.parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module = path.stem if path.parent == kernels else ""
        visit(tree, path, *_inner_bindings(tree, module, inner))
    assert not offenders, offenders
