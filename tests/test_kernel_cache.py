"""Where compiled kernels are cached, and when the cache is renewed."""

from __future__ import annotations

import os
import time

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
