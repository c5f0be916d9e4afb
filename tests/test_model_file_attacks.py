"""Hostile model files: each attack on the loader ends in one line of ModelFileError naming the
file, quickly and without large allocations, in the library and on the command line; a fuzzer
then mutates every part of a real checkpoint (config values, arrays, the header) and runs each
file through load, predict and resumed training in a separate process.

Tampered files carry valid digests (a forger recomputes them): they are written with
:func:`tagger.persist.save_model` where it accepts the content, else by building the safetensors
header here (NaN weights, wrong declared shapes, a changed container).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tagger import ner_data
from typer.testing import CliRunner

import tagger
from tagger import persist
from tagger._version import __version__
from tagger.cli import app
from tagger.errors import ModelFileError
from tagger.estimators import SequenceTagger

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_model_fuzz_worker.py"
TINY = dict(hidden_size=8, word_dim=8, char_dim=4, char_hidden_size=4, shape_dim=2,
            batch_size=8, max_epochs=2, learning_rate=0.01, random_state=0)
# Subprocesses share the warm kernel cache (TAGGER_CACHE_DIR and the rest of the environment
# are inherited) and stay on one thread: the test machine is small.
SUBPROCESS_ENV = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                      OPENBLAS_NUM_THREADS="1", TAGGER_DEVICE="cpu")
CONTAINER = {"format": persist.FORMAT, "format_version": persist.FORMAT_VERSION,
             "library_version": __version__}


# ----------------------------------------------------------------------------------------------
# building model files by hand
# ----------------------------------------------------------------------------------------------


def _order(arrays: dict[str, np.ndarray]) -> list[str]:
    return sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))


def _json_text(value) -> str:
    """JSON as the library writes it; ASCII escapes where UTF-8 cannot hold a string (a lone
    surrogate)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"))
    return text


def container_bytes(config, arrays: dict[str, np.ndarray], entries: dict | None = None,
                    metadata: dict | None = None, config_text: str | None = None) -> bytes:
    """A format-2 file holding ``config`` (any JSON, NaN included) and ``arrays`` (any values),
    with valid digests. ``entries`` overrides array-table entries after the offsets are laid out
    (a dict is merged into the entry, anything else replaces it); ``metadata`` overrides
    ``__metadata__`` entries after the digests are computed."""
    if config_text is None:
        config_text = _json_text(config)
    table, blobs, offset = {}, [], 0
    for name in _order(arrays):
        array = arrays[name]
        blob = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
        code = persist._code_of(array.dtype)
        table[name] = {"dtype": code, "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    data = b"".join(blobs)
    for name, override in (entries or {}).items():
        if isinstance(override, dict) and isinstance(table.get(name), dict):
            table[name] = {**table[name], **override}
        else:
            table[name] = override
    meta = {"format": persist.FORMAT, "format_version": str(persist.FORMAT_VERSION),
            "config": config_text,
            "config_sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
            "data_sha256": hashlib.sha256(data).hexdigest()}
    meta.update(metadata or {})
    header = _json_text({"__metadata__": meta, **table}).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def write_model(path: Path, config: dict, arrays: dict[str, np.ndarray], *,
                raw: bool = False, **overrides) -> str:
    """Write a (tampered) model file; say how: "save_model" when the library's writer accepts
    the content, else "raw"."""
    container_intact = {k: config.get(k) for k in CONTAINER} == CONTAINER and isinstance(
        config.get("kind"), str) and config["kind"]
    if not raw and not overrides and container_intact:
        try:
            persist.save_model(path, config["kind"], {
                k: v for k, v in config.items() if k not in persist.CONTAINER_KEYS}, arrays)
            return "save_model"
        except (ValueError, TypeError):
            pass
    Path(path).write_bytes(container_bytes(config, arrays, **overrides))
    return "raw"


def read_model(path) -> tuple[dict, dict[str, np.ndarray]]:
    config, arrays = persist.load_model(path)
    return json.loads(json.dumps(config)), {k: v.copy() for k, v in arrays.items()}


def assert_one_line(exc: BaseException, path) -> None:
    message = str(exc)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "Traceback" not in message, message


def run_cli(*args, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagger.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=SUBPROCESS_ENV,
                          check=False)


def assert_cli_error(result: subprocess.CompletedProcess, path, *fragments: str) -> None:
    """Exit code 1 (not a signal: -11/139, -6/134), one ``error:`` line naming the file."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------
# a small real model: a checkpoint (optimizer and training state, best weights) and final files
# ----------------------------------------------------------------------------------------------


class Files:
    def __init__(self, root: Path):
        self.X, self.y = ner_data(24)
        self.checkpoint = root / "checkpoint.tagger"
        self.weights = root / "weights.tagger"
        self.with_optimizer = root / "optimizer.tagger"

        def save_first_epoch(event, info):
            if event == "epoch_end" and info["epoch"] == 1:
                info["estimator"].save(self.checkpoint)

        self.model = SequenceTagger(**TINY).fit(self.X, self.y, X_dev=self.X[:8],
                                                y_dev=self.y[:8], callback=save_first_epoch)
        self.model.save(self.weights)
        self.model.save(self.with_optimizer, optimizer_state=True)
        config = persist.read_config(self.checkpoint)
        assert config["contents"] == "checkpoint"
        assert config["training_state"]["has_best_params"]
        self.conll = root / "train.conll"
        self.conll.write_text("".join(
            "".join(f"{w} {t}\n" for w, t in zip(s, tags, strict=True)) + "\n"
            for s, tags in zip(self.X, self.y, strict=True)), encoding="utf-8")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("models"))


# ----------------------------------------------------------------------------------------------
# a. optimizer state of the wrong shape
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["checkpoint", "with_optimizer"])
@pytest.mark.parametrize("slot", [np.zeros(10, np.float32), np.zeros((3, 16), np.float32),
                                  np.zeros((16, 3), np.float64)], ids=["10", "transposed", "f64"])
def test_an_optimizer_slot_of_the_wrong_shape_is_refused_at_load(files, tmp_path, source, slot):
    config, arrays = read_model(getattr(files, source))
    arrays["optimizer.slot.m.out.W"] = slot
    path = tmp_path / "slot.tagger"
    assert write_model(path, config, arrays) == "save_model"
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"'optimizer\.slot\.m\.out\.W' has (shape|dtype)") \
            as caught:
        tagger.load(path).partial_fit(files.X[:2], files.y[:2])
    assert time.perf_counter() - start < 2
    assert_one_line(caught.value, path)


def test_resuming_training_from_a_bad_slot_on_the_command_line_exits_1(files, tmp_path):
    config, arrays = read_model(files.checkpoint)
    arrays["optimizer.slot.m.out.W"] = np.zeros(10, np.float32)
    path = tmp_path / "slot.tagger"
    write_model(path, config, arrays)
    result = run_cli("train", "--train", files.conll, "--resume", path, "-o",
                     tmp_path / "out.tagger", "--quiet", "--threads", "1", "--device", "cpu")
    assert_cli_error(result, path, "optimizer.slot.m.out.W", "shape (10,)")
    assert not (tmp_path / "out.tagger").exists()


# ----------------------------------------------------------------------------------------------
# b. compression bombs in format 1
# ----------------------------------------------------------------------------------------------

GB = 2**30
CHUNK = bytes(2**20)

# Loads each file in a fresh process and reports the error, the time and the growth of the
# peak resident set (KiB on Linux) as JSON lines.
MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    from tagger import persist
    from tagger.errors import ModelFileError
    for path in sys.argv[1:]:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            persist.load_model(path)
            error = None
        except ModelFileError as exc:
            error = str(exc)
        print(json.dumps({"error": error, "seconds": time.perf_counter() - start,
                          "growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        - base) / 1024}), flush=True)
""")


def _measure_loads(*paths) -> list[dict]:
    result = subprocess.run([sys.executable, "-c", MEASURE, *map(str, paths)],
                            capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def _v1_config(files: Files) -> bytes:
    config, _ = read_model(files.weights)
    config["format_version"] = 1
    return json.dumps(config).encode("utf-8")


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _write_v1(path: Path, config: bytes, write_weights, weights_type: int,
              config_type: int = zipfile.ZIP_STORED) -> None:
    """A format-1 archive: config.json, weights.npz written by ``write_weights(fh)``, and
    checksums.json (the config's digest valid; the weights' digest never reached)."""
    with zipfile.ZipFile(path, "w", compression=weights_type, compresslevel=1) as archive:
        archive.writestr("config.json", config, compress_type=config_type)
        with archive.open("weights.npz", "w", force_zip64=True) as fh:
            write_weights(fh)
        archive.writestr("checksums.json", json.dumps({
            "config.json": hashlib.sha256(config).hexdigest(), "weights.npz": "0" * 64}),
            compress_type=zipfile.ZIP_STORED)


def _zeros_npy(fh, n_bytes: int) -> None:
    fh.write(_npy_header((n_bytes // 4,)))
    for _ in range(n_bytes // len(CHUNK)):
        fh.write(CHUNK)


def _npz_of_a_gigabyte(compress_type: int):
    def write(fh):
        # zipfile writes to a stream it cannot seek (data descriptors), so nothing is buffered.
        with zipfile.ZipFile(fh, "w", compression=compress_type, compresslevel=1) as npz:
            with npz.open("emb.word.npy", "w", force_zip64=True) as member:
                _zeros_npy(member, GB)
    return write


def test_compressed_weights_in_a_format_1_file_are_refused_without_inflating(files, tmp_path):
    outer, inner = tmp_path / "outer.tagger", tmp_path / "inner.tagger"
    config = _v1_config(files)
    # weights.npz deflated: 1 GiB of arrays in about 5 MB.
    _write_v1(outer, config, _npz_of_a_gigabyte(zipfile.ZIP_STORED), zipfile.ZIP_DEFLATED)
    # weights.npz stored, its array deflated.
    _write_v1(inner, config, _npz_of_a_gigabyte(zipfile.ZIP_DEFLATED), zipfile.ZIP_STORED)
    assert outer.stat().st_size < 20 * 2**20 and inner.stat().st_size < 20 * 2**20
    reports = _measure_loads(outer, inner)
    for path, report, what in ((outer, reports[0], "weights.npz is compressed"),
                               (inner, reports[1], "array 'emb.word' is compressed")):
        assert report["error"] is not None and report["error"].startswith(f"{path}: ")
        assert what in report["error"] and "\n" not in report["error"]
        assert report["seconds"] < 2, report
        assert report["growth_mb"] < 200, report


def test_a_compressed_config_in_a_format_1_file_is_refused_without_inflating(files, tmp_path):
    path = tmp_path / "config-bomb.tagger"
    head = _v1_config(files)[:-1] + b', "padding": "'
    size = 250 * 2**20  # a bomb: far above what JSON deflates to
    padding = b"a" * 2**20
    digest = hashlib.sha256(head)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("config.json", "w", force_zip64=True) as fh:
            fh.write(head)
            for _ in range(size // len(padding)):
                fh.write(padding)
                digest.update(padding)
            fh.write(b'"}')
            digest.update(b'"}')
        archive.writestr("weights.npz", b"", compress_type=zipfile.ZIP_STORED)
        archive.writestr("checksums.json", json.dumps(
            {"config.json": digest.hexdigest(), "weights.npz": "0" * 64}),
            compress_type=zipfile.ZIP_STORED)
    assert path.stat().st_size < 5 * 2**20
    (report,) = _measure_loads(path)
    assert report["error"] is not None and report["error"].startswith(f"{path}: "), report
    assert "compress" in report["error"][len(f"{path}: "):], report
    assert report["growth_mb"] < 200, report


# ----------------------------------------------------------------------------------------------
# c. a header that declares far more than the file holds
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [
    {"shape": [500_000_000], "data_offsets": [0, 2_000_000_000]},  # offsets agree, file short
    {"shape": [500_000_000]},                                      # offsets of the real array
], ids=["offsets-2GB", "shape-only"])
def test_a_two_gigabyte_array_declared_in_a_small_file_is_refused(files, tmp_path, declared):
    config, _ = read_model(files.weights)
    path = tmp_path / "huge.tagger"
    write_model(path, config, {"emb.word": np.zeros(16, np.float32)},
                entries={"emb.word": declared})
    assert path.stat().st_size < 64 * 1024
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="2000000000 bytes") as caught:
        persist.load_model(path)
    assert_one_line(caught.value, path)
    with pytest.raises(ModelFileError):
        tagger.load(path)
    assert time.perf_counter() - start < 2
    result = run_cli("info", path)
    assert_cli_error(result, path, "2000000000 bytes")
    assert "parameters" not in result.stdout


# ----------------------------------------------------------------------------------------------
# d. a config that asks for huge networks or label sets
# ----------------------------------------------------------------------------------------------


def _set(config: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for parent in parents:
        config = config[parent]
    config[key] = value


@pytest.mark.parametrize(("changes", "match"), [
    ({"params.hidden_size": 3000}, r"has shape \(.*\), expected \(.*(3000|6000|12000)"),
    ({"params.hidden_size": 8192, "params.num_layers": 32}, "missing arrays"),
    ({"classes": [f"B-T{i}" for i in range(100_000)],
      "tags": [f"B-T{i}" for i in range(100_000)]}, "100000 entries, more than the limit"),
    ({"params.num_layers": 10**9}, "num_layers is 1000000000, outside"),
    ({"params.word_dim": 10**9}, "word_dim is 1000000000, outside"),
    ({"word_dim": 10**9}, "word_dim is 1000000000, outside"),
    ({"params.char_hidden_size": 10**9}, "char_hidden_size is 1000000000, outside"),
    ({"params.shape_dim": 10**9}, "shape_dim is 1000000000, outside"),
], ids=["hidden-3000", "hidden-8192x32", "labels-1e5", "layers-1e9", "word_dim-1e9",
        "config-word_dim-1e9", "char_hidden-1e9", "shape_dim-1e9"])
def test_a_config_asking_for_a_huge_model_is_refused_fast_without_allocating(
        files, tmp_path, changes, match):
    config, arrays = read_model(files.checkpoint)
    for dotted, value in changes.items():
        _set(config, dotted, value)
    path = tmp_path / "huge.tagger"
    write_model(path, config, arrays)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=match) as caught:
            tagger.load(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(caught.value, path)
    assert seconds < 2, seconds
    assert peak < 64 * 2**20, peak  # the 1e5 labels' JSON itself is a few MB


# ----------------------------------------------------------------------------------------------
# e. a tokenizer pattern with exponential backtracking
# ----------------------------------------------------------------------------------------------


def test_a_catastrophic_tokenizer_pattern_runs_only_when_trusted(files, tmp_path):
    config, arrays = read_model(files.weights)
    config["params"]["tokenizer"] = r"(a+)+b|\S"
    path = tmp_path / "redos.tagger"
    write_model(path, config, arrays)
    with pytest.raises(ModelFileError, match="trust_tokenizer") as caught:
        tagger.load(path)
    assert_one_line(caught.value, path)
    trusted = tagger.load(path, trust_tokenizer=True)
    assert trusted.tokenizer == r"(a+)+b|\S"
    # Pre-tokenised input never meets the pattern.
    assert trusted.predict(files.X[:2]) == files.model.predict(files.X[:2])
    start = time.perf_counter()
    result = run_cli("predict", path, "-", stdin="a" * 40 + "\n", timeout=20)
    assert time.perf_counter() - start < 20
    assert_cli_error(result, path, "--trust-tokenizer")
    assert result.stdout == ""


# ----------------------------------------------------------------------------------------------
# f. non-finite weights
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["emb.word", "rnn.0.fwd.U", "optimizer.slot.v.out.b",
                                  "best.crf.trans"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused_at_load(files, tmp_path, name, value):
    config, arrays = read_model(files.checkpoint)
    arrays[name].flat[arrays[name].size // 2] = value
    path = tmp_path / "nan.tagger"
    assert write_model(path, config, arrays) == "raw"  # save_model refuses them
    with pytest.raises(ModelFileError, match=f"array '{name}' holds NaN or infinity") as caught:
        tagger.load(path)
    assert_one_line(caught.value, path)


def test_saving_a_model_with_a_nan_weight_raises_and_writes_nothing(files, tmp_path):
    model = tagger.load(files.weights)
    model.params_["out.W"][0, 0] = np.nan
    path = tmp_path / "new.tagger"
    with pytest.raises(ValueError, match="'out.W' holds NaN or infinity"):
        model.save(path)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "existing.tagger"
    files.model.save(existing)
    before = existing.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        model.save(existing)
    assert existing.read_bytes() == before and list(tmp_path.iterdir()) == [existing]


# ----------------------------------------------------------------------------------------------
# g. malformed config values and optimizer state
# ----------------------------------------------------------------------------------------------


def _drop(mapping: dict, key: str):
    del mapping[key]


MALFORMED = {
    "empty classes": lambda c, a: c.update(classes=[]),
    "unknown tag_scheme": lambda c, a: c.update(tag_scheme="IOB9"),
    "internal_scheme not the tag_scheme's": lambda c, a: c.update(internal_scheme="IOB1"),
    "classes not matching tags": lambda c, a: c.update(classes=["X", "Y", "Z"]),
    "duplicate classes": lambda c, a: c.update(classes=["O", "O"]),
    "negative word_dim": lambda c, a: c.update(word_dim=-8),
    "negative params.word_dim": lambda c, a: c["params"].update(word_dim=-8),
    "zero hidden_size": lambda c, a: c["params"].update(hidden_size=0),
    "hidden_size a string": lambda c, a: c["params"].update(hidden_size="8"),
    "hidden_size a float": lambda c, a: c["params"].update(hidden_size=8.0),
    "hidden_size a bool": lambda c, a: c["params"].update(hidden_size=True),
    "dropout out of range": lambda c, a: c["params"].update(dropout=1.5),
    "learning_rate negative": lambda c, a: c["params"].update(learning_rate=-1.0),
    "unknown cell": lambda c, a: c["params"].update(cell="transformer"),
    "unknown hyperparameter": lambda c, a: c["params"].update(evil=1),
    "params a list": lambda c, a: c.update(params=[1, 2]),
    "vocabulary a list": lambda c, a: c.update(vocabulary=["a", "b"]),
    "vocabulary counts short": lambda c, a: c["vocabulary"]["counts"].pop(),
    "vocabulary with the padding entry": lambda c, a: c["vocabulary"].update(
        items=["<pad>", *c["vocabulary"]["items"][1:]]),
    "history a dict": lambda c, a: c.update(history={"epoch": 1}),
    "best_epoch a string": lambda c, a: c.update(best_epoch="1"),
    "best_epoch beyond the history": lambda c, a: c.update(best_epoch=99),
    "unknown contents": lambda c, a: c.update(contents="everything"),
    "unknown input_type": lambda c, a: c.update(input_type="audio"),
    "training_state a list": lambda c, a: c.update(training_state=[]),
    "training_state without rng": lambda c, a: _drop(c["training_state"], "rng"),
    "training_state rng a number": lambda c, a: c["training_state"].update(rng=7),
    "training_state rng malformed": lambda c, a: c["training_state"].update(
        rng={"bit_generator": "PCG64", "state": "x"}),
    "training_state rng of another generator": lambda c, a: c["training_state"]["rng"].update(
        bit_generator="MT19937"),
    "training_state waited negative": lambda c, a: c["training_state"].update(waited=-1),
    "training_state has_best_params a string": lambda c, a: c["training_state"].update(
        has_best_params="yes"),
    "training_state best_key of strings": lambda c, a: c["training_state"].update(
        best_key=["x"]),
    "training_state without has_best_params": lambda c, a: _drop(c["training_state"],
                                                                 "has_best_params"),
    "training_state pass_batch negative": lambda c, a: c["training_state"].update(
        pass_batch=-1),
    "training_state pass_batch a string": lambda c, a: c["training_state"].update(
        pass_batch="1"),
    "training_state pass_rng malformed": lambda c, a: c["training_state"].update(
        pass_batch=1, pass_rng={"bit_generator": "PCG64", "state": "x"}),
    "epoch_size zero": lambda c, a: c["params"].update(epoch_size=0),
    "epoch_size a float": lambda c, a: c["params"].update(epoch_size=100.5),
    "optimizer arrays without optimizer.steps": lambda c, a: _drop(a, "optimizer.steps"),
    "negative optimizer.steps": lambda c, a: a.update(
        {"optimizer.steps": np.array(-1, np.int64)}),
    "optimizer.steps a float": lambda c, a: a.update({"optimizer.steps": np.array(1.0)}),
    "optimizer.steps a vector": lambda c, a: a.update(
        {"optimizer.steps": np.array([1, 2], np.int64)}),
    "Adam's first moment without the second": lambda c, a: _drop(a, "optimizer.slot.v.out.W"),
    "Adam's second moment negative": lambda c, a: a["optimizer.slot.v.out.b"].fill(-1.0),
    "an unexpected array": lambda c, a: a.update(extra=np.zeros(3, np.float32)),
    "a parameter missing": lambda c, a: _drop(a, "crf.trans"),
    "a parameter as float64": lambda c, a: a.update({"out.b": a["out.b"].astype(np.float64)}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_config_or_optimizer_state_is_one_model_file_error(files, tmp_path, case):
    config, arrays = read_model(files.checkpoint)
    MALFORMED[case](config, arrays)
    path = tmp_path / "bad.tagger"
    write_model(path, config, arrays)
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as caught:
        tagger.load(path)
    assert time.perf_counter() - start < 2
    assert_one_line(caught.value, path)
    result = CliRunner().invoke(app, ["predict", str(path), "--device", "cpu"], input="a b\n")
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"error: {caught.value}"]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_training_with_a_huge_learning_rate_from_a_file_keeps_weights_finite(files, tmp_path):
    config, arrays = read_model(files.with_optimizer)
    config["params"]["learning_rate"] = 1e300
    path = tmp_path / "lr.tagger"
    write_model(path, config, arrays)
    try:
        model = tagger.load(path)
        model.partial_fit(files.X[:4], files.y[:4])
    except (ModelFileError, FloatingPointError):
        return  # refused at load, or stopped as diverged: both fine
    bad = [k for k, v in model.params_.items() if not np.isfinite(v).all()]
    assert not bad, f"{len(bad)} weight arrays non-finite after partial_fit, e.g. {bad[0]}"


def test_a_file_from_before_epoch_size_goes_on_training_in_whole_passes(files, tmp_path):
    config, arrays = read_model(files.checkpoint)
    assert config["params"]["epoch_size"] == 20000
    del config["params"]["epoch_size"]
    path = tmp_path / "old.tagger"
    write_model(path, config, arrays)
    assert tagger.load(path).epoch_size is None
    assert tagger.load(files.checkpoint).epoch_size == 20000


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_random_state_numpy_cannot_take_is_refused_at_load(files, tmp_path, seed):
    config, arrays = read_model(files.with_optimizer)
    config["params"]["random_state"] = seed
    path = tmp_path / "seed.tagger"
    write_model(path, config, arrays)
    try:
        model = tagger.load(path)
    except ModelFileError as exc:
        assert "random_state" in str(exc)
        return
    model.partial_fit(files.X[:4], files.y[:4])  # or else it must work


# ----------------------------------------------------------------------------------------------
# h. loading runs no initialiser; i. files are reproducible
# ----------------------------------------------------------------------------------------------


def test_load_and_predict_run_no_initialiser(files, monkeypatch):
    from tagger.nn import init

    def forbidden(*args, **kwargs):
        raise AssertionError("an initialiser ran while loading a model")

    for name in ("uniform", "glorot_uniform", "orthogonal", "recurrent_orthogonal", "identity"):
        monkeypatch.setattr(init, name, forbidden)
    for path in (files.weights, files.with_optimizer, files.checkpoint):
        model = tagger.load(path)
        assert len(model.predict(files.X[:3])) == 3
    assert tagger.load(files.weights).predict(files.X[:5]) == files.model.predict(files.X[:5])


def test_model_files_round_trip_bit_for_bit(files, tmp_path):
    for optimizer_state, source in ((False, files.weights), (True, files.with_optimizer)):
        again = tmp_path / f"again-{optimizer_state}.tagger"
        tagger.load(source).save(again, optimizer_state=optimizer_state)
        assert again.read_bytes() == source.read_bytes()
        tagger.load(again).save(tmp_path / "third.tagger", optimizer_state=optimizer_state)
        assert (tmp_path / "third.tagger").read_bytes() == source.read_bytes()
    # A checkpoint through the container (an estimator loaded from one saves its weights).
    config, arrays = persist.load_model(files.checkpoint)
    stripped = {k: v for k, v in config.items() if k not in persist.CONTAINER_KEYS}
    assert persist.model_bytes(config["kind"], stripped, arrays) == files.checkpoint.read_bytes()
    # The header written here for tampered files is the library's own, byte for byte.
    assert container_bytes(config, arrays) == files.checkpoint.read_bytes()


# ----------------------------------------------------------------------------------------------
# the fuzzer
# ----------------------------------------------------------------------------------------------

N_CASES = 300
PER_CASE_SECONDS = 10
WARM_UP_SECONDS = 600  # a cold kernel cache compiles everything there
MAX_RSS_GROWTH_MB = 1024

_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 1025, 8193, 2**31, 2**31 - 1, 2**53 + 1, 2**63, 10**9,
                     -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e300, -1e300, 1e-320]),
    st.text(max_size=10),
    st.sampled_from(["", "auto", "cpu", "cuda", "lstm", "gru", "rnn", "irnn", "cnn", "sgd",
                     "adam", "IOB1", "IOB2", "BIOES", "none", "O", "B-PER", "I-LOC", "text",
                     "numeric", "weights", "weights+optimizer", "checkpoint", "whitespace",
                     "regex", r"(a+)+b", "PCG64", "SequenceTagger", "SequenceClassifier",
                     "x" * 100_000]),
)
_JSON = st.recursive(_SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(["items", "counts", "state", "inc", "bit_generator", "a",
                                     "epoch", ""]) | st.text(max_size=5), children,
                    max_size=4)), max_leaves=6)
_BAD_ENTRIES = [
    {"shape": [500_000_000]}, {"shape": [2**40], "data_offsets": [0, 2**42]},
    {"shape": [-1]}, {"shape": [2**48]}, {"shape": "3"}, {"shape": [True]}, {"shape": [1] * 9},
    {"shape": [3.0]}, {"dtype": "F128"}, {"dtype": "O"}, {"dtype": 4}, {"dtype": "BF16"},
    {"data_offsets": [8, 0]}, {"data_offsets": [0]}, {"data_offsets": [-8, 8]},
    {"data_offsets": [1, 2**60]}, {"extra": 1}, [], "F32", None,
]
_BAD_METADATA = [
    {"format_version": "3"}, {"format_version": "1"}, {"format_version": "0"},
    {"format_version": "x"}, {"format_version": 2}, {"format_version": "99999999"},
    {"format": "other"}, {"config_sha256": "0" * 64}, {"data_sha256": "0" * 64},
    {"config": "{}"}, {"config": "[]"}, {"config": "NaN"}, {"extra": "x"},
]


def _draw_path(data, root) -> list:
    """A path into the config: a leaf, or (one time in four below the top) an inner node."""
    path, node = [], root
    while isinstance(node, (dict, list)) and node:
        if path and data.draw(st.integers(0, 3)) == 0:
            break
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict)
                                        else list(range(len(node)))))
        path.append(key)
        node = node[key]
    return path


def _new_shape(data, shape: tuple) -> tuple:
    return data.draw(st.sampled_from([
        (), (10,), (0,), shape[::-1], (*shape, 1), (1, *shape), (shape[0] + 1, *shape[1:])
        if shape else (2,), tuple(d * 2 for d in shape), (2**20,)]))


# Values that pass (or just miss) the loader's checks, so that the files reach predict and
# training.
_PLAUSIBLE_PARAMS = {
    "learning_rate": [1e-30, 1e30, 1e300, 5e-324, 0.0],
    "lr_decay": [0.0, 1e30, 1e300, -1.0],
    "clip_norm": [None, 0.0, -1.0, 1e-30, 1e30],
    "dropout": [0.0, 0.999999, 0.5, 1.0],
    "word_dropout": [0.0, 1e30, 1e300],
    "batch_size": [1, 2**31],
    "max_epochs": [1, 2**31],
    "patience": [1, 2**31],
    "epoch_size": [None, 0, 1, 2**31, 2**63, 1.5],
    "min_word_count": [1, 2**31],
    "validation_fraction": [0.0, 0.999],
    "n_jobs": [None, -1, 0, 1, 2**32, -(2**31)],
    "random_state": [None, -1, 0, 2**32, -(2**31)],
    "verbose": [0, 1, 100],
    "lowercase": [True, False],
    "early_stopping": [True, False],
    "tag_scheme": ["auto", "IOB1", "IOB2", "BIOES", "none", "iob2", "bogus", 5],
    "labels": [None, [], ["O"], ["B-PER", "B-ZZZ"], "O", [1]],
    "embeddings": [None, "/nonexistent/vectors.txt", ""],
    "device": ["auto", "cpu", "cuda"],
    "tokenizer": ["regex", "whitespace"],
}
_PCG64 = {"bit_generator": "PCG64", "state": {"state": 2**128 - 1, "inc": 1}, "has_uint32": 0,
          "uinteger": 0}
_PLAUSIBLE_STATE = {
    "best_key": [[], [1e308], [-1e308, 0.5], [0.0] * 16, [0.0] * 17],
    "best_progress": [[], [1.0], [0.0] * 16],
    "waited": [0, 2**31, 10**6],
    "stopped": [True, False],
    "has_best_params": [True, False],
    "rng": [_PCG64, {**_PCG64, "state": {"state": 0, "inc": 0}},
            {**_PCG64, "has_uint32": 1, "uinteger": 2**32 - 1},
            {**_PCG64, "has_uint32": 2}, {**_PCG64, "state": {"state": -1, "inc": 1}},
            {**_PCG64, "state": {"state": 2**200, "inc": 1}}],
    "pass_batch": [0, 1, 2, 2**31, -1, 2**40],
    "pass_rng": [None, _PCG64, {**_PCG64, "state": {"state": -1, "inc": 1}}, 7],
}
# Changes of the network's structure or label set, after which the arrays are rebuilt to the
# shapes the config implies (so that the file passes the array checks).
_STRUCTURE = {
    "cell": ["lstm", "gru", "rnn", "irnn"],
    "bidirectional": [True, False],
    "crf": [True, False],
    "char_encoder": ["cnn", "lstm", None],
    "num_layers": [1, 2, 3],
    "hidden_size": [1, 3, 24],
    "char_dim": [1, 7],
    "char_hidden_size": [1, 9],
    "shape_dim": [0, 1, 5],
    "optimizer": ["sgd", "adam"],
}
_WORDS = ["", " ", "\u00a0", "a b", "\t", "\u0000", "<pad>", "<unk>", "x" * 10_000, "🙂",
          "\ud800", "John", "zzz"]


def _set_word_dim(config: dict, word_dim: int) -> None:
    config["word_dim"] = word_dim
    if isinstance(config.get("params"), dict):
        config["params"]["word_dim"] = word_dim


def fit_arrays(data, config: dict, arrays: dict[str, np.ndarray]) -> bool:
    """Rebuild the arrays to the shapes and dtypes ``config`` implies (the loader's own
    derivation), keeping those that already fit; False when the config is refused or the
    arrays would be large."""
    from tagger.estimators import _modelfile

    try:
        estimator, word_dim = _modelfile.restore_from_config(SequenceTagger, config, False)
        model = estimator._model_for(word_dim, resolve_device=False)
        expected = _modelfile.expected_arrays(estimator, model, config)
    except Exception:  # noqa: BLE001 - a refused config is left to the loader to refuse
        return False
    if sum(int(np.prod(want[0])) for want in expected.values()) > 2_000_000:
        return False
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rebuilt = {}
    for name, (shape, dtype, *required) in expected.items():
        old = arrays.get(name)
        if old is not None and old.shape == tuple(shape) and old.dtype == np.dtype(dtype):
            rebuilt[name] = old
        elif old is not None or not required or required[0]:
            values = np.abs(rng.normal(0, 0.1, size=shape)) if ".v." in name else \
                rng.normal(0, 0.1, size=shape)
            rebuilt[name] = values.astype(dtype)
    if "optimizer.steps" in rebuilt:
        rebuilt["optimizer.steps"] = np.array(arrays.get("optimizer.steps", 1), np.int64)
    arrays.clear()
    arrays.update(rebuilt)
    return True


def _structural(data, config: dict, notes: list) -> None:
    what = data.draw(st.sampled_from([*_STRUCTURE, "word_dim", "words", "labels", "scheme"]))
    params = config.get("params") if isinstance(config.get("params"), dict) else {}
    if what in _STRUCTURE:
        value = data.draw(st.sampled_from(_STRUCTURE[what]))
        params[what] = value
        if what == "char_encoder":
            if value is None:
                config["char_vocabulary"] = None
            elif not isinstance(config.get("char_vocabulary"), dict):
                config["char_vocabulary"] = {"items": list("abc"), "counts": [1, 1, 1]}
        notes.append(f"structure {what} = {value!r}")
    elif what == "word_dim":
        value = data.draw(st.sampled_from([1, 5, 32]))
        _set_word_dim(config, value)
        notes.append(f"structure word_dim = {value}")
    elif what == "words":
        vocabulary = config.get("vocabulary")
        if isinstance(vocabulary, dict) and isinstance(vocabulary.get("items"), list):
            words = data.draw(st.lists(st.sampled_from(_WORDS) | st.text(min_size=1,
                                                                          max_size=8),
                                       min_size=1, max_size=4, unique=True))
            words = [w for w in words if w not in vocabulary["items"]]
            vocabulary["items"] = [*vocabulary["items"], *words]
            vocabulary["counts"] = [*vocabulary.get("counts", []), *[2**62] * len(words)]
            notes.append(f"structure words + {[w[:12] for w in words]}")
    elif what == "labels":
        kind = data.draw(st.sampled_from(["NEW", "PER", "X-Y", "é"]))
        added = [f"B-{kind}", f"I-{kind}"]
        config["classes"] = sorted({*config.get("classes", []), *added}) \
            if isinstance(config.get("classes"), list) else added
        tags = config.get("tags") if isinstance(config.get("tags"), list) else []
        config["tags"] = sorted({*tags, *(f"{p}-{kind}" for p in "BIES")})
        notes.append(f"structure labels + {kind}")
    else:
        scheme = data.draw(st.sampled_from(["IOB2", "BIOES", "IOB1", "none"]))
        config["tag_scheme"] = scheme
        config["internal_scheme"] = {"IOB2": "BIOES"}.get(scheme, scheme)
        notes.append(f"structure tag_scheme = {scheme}")


def mutate(data, config: dict, arrays: dict[str, np.ndarray]):
    """A random mutation of a model file's content: the config (plausible values, structure
    changes with arrays to match, or arbitrary JSON), the arrays and (written by hand) the
    header. Returns the content, the writer's keyword arguments and a description."""
    notes: list[str] = []
    overrides: dict = {}
    entries: dict = {}
    structural = False
    for _ in range(data.draw(st.integers(1, 3))):
        what = data.draw(st.sampled_from([
            "params.plausible", "params.plausible", "state.plausible", "structure",
            "structure", "structure", "config.replace", "config.replace", "params.replace",
            "config.delete", "array.shape", "array.dtype", "array.drop", "array.add",
            "array.nonfinite", "array.scale", "array.scale", "array.steps", "header.entry",
            "header.metadata"]))
        names = sorted(arrays)
        if what == "params.plausible" and isinstance(config.get("params"), dict):
            key = data.draw(st.sampled_from(sorted(_PLAUSIBLE_PARAMS)))
            value = data.draw(st.sampled_from(_PLAUSIBLE_PARAMS[key]))
            config["params"][key] = value
            notes.append(f"params[{key!r}] = {value!r}")
        elif what == "state.plausible" and isinstance(config.get("training_state"), dict):
            key = data.draw(st.sampled_from(sorted(_PLAUSIBLE_STATE)))
            value = data.draw(st.sampled_from(_PLAUSIBLE_STATE[key]))
            config["training_state"][key] = value
            notes.append(f"training_state[{key!r}] = {json.dumps(value)[:80]}")
        elif what == "structure":
            _structural(data, config, notes)
            structural = True
        elif what in ("config.replace", "params.replace", "config.delete"):
            inside = what == "params.replace" and isinstance(config.get("params"), dict)
            path = _draw_path(data, config["params"] if inside else config)
            if inside:
                path = ["params", *path]
            if not path:
                continue
            parent = config
            for key in path[:-1]:
                parent = parent[key]
            if what == "config.delete":
                if isinstance(parent, dict):
                    del parent[path[-1]]
                    notes.append(f"delete config{path}")
                continue
            value = data.draw(_JSON)
            parent[path[-1]] = value
            notes.append(f"config{path} = {json.dumps(value)[:80]}")
        elif not names:
            continue
        elif what == "array.shape":
            name = data.draw(st.sampled_from(names))
            shape = _new_shape(data, arrays[name].shape)
            arrays[name] = np.full(shape, 0.1, arrays[name].dtype)
            notes.append(f"{name} shape {shape}")
        elif what == "array.dtype":
            name = data.draw(st.sampled_from(names))
            dtype = data.draw(st.sampled_from(["float64", "float16", "float32", "int64",
                                               "int32", "int8", "uint8", "bool"]))
            with np.errstate(all="ignore"):
                arrays[name] = arrays[name].astype(dtype)
            notes.append(f"{name} as {dtype}")
        elif what == "array.drop":
            name = data.draw(st.sampled_from(names))
            del arrays[name]
            notes.append(f"drop {name}")
        elif what == "array.add":
            base = data.draw(st.sampled_from(names))
            name = data.draw(st.sampled_from([
                f"best.{base}", f"optimizer.slot.m.{base}", f"optimizer.slot.v.{base}",
                f"optimizer.slot.{base}", f"{base}.extra", "optimizer.steps", "rnn.9.fwd.W",
                "x"]))
            arrays[name] = np.zeros(arrays[base].shape, np.float32)
            notes.append(f"add {name}")
        elif what == "array.nonfinite":
            floats = [n for n in names if arrays[n].dtype.kind == "f" and arrays[n].size]
            if floats:
                name = data.draw(st.sampled_from(floats))
                value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
                arrays[name].flat[data.draw(st.integers(0, arrays[name].size - 1))] = value
                overrides["raw"] = True
                notes.append(f"{name} holds {value}")
        elif what == "array.scale":
            name = data.draw(st.sampled_from(names))
            factor = data.draw(st.sampled_from([0.0, -1.0, 1e30, -1e30, 1e-30, 3e38]))
            with np.errstate(all="ignore"):
                arrays[name] = (arrays[name] * factor).astype(arrays[name].dtype)
            notes.append(f"{name} * {factor}")
        elif what == "array.steps":
            value = data.draw(st.sampled_from([-1, 0, 2**53 + 1, 2**62, -(2**63)]))
            arrays["optimizer.steps"] = np.array(value, np.int64)
            notes.append(f"optimizer.steps = {value}")
        elif what == "header.entry":
            name = data.draw(st.sampled_from(names))
            entry = data.draw(st.sampled_from(_BAD_ENTRIES))
            entries[name] = entry
            notes.append(f"header entry {name}: {entry}")
        elif what == "header.metadata":
            change = data.draw(st.sampled_from(_BAD_METADATA))
            overrides.setdefault("metadata", {}).update(change)
            notes.append(f"metadata {change}")
    if structural and not fit_arrays(data, config, arrays):
        notes.append("(arrays not refitted)")
    if entries:
        overrides["entries"] = entries
    return config, arrays, overrides, notes


class _Lines:
    """JSON lines from a worker's standard output, each awaited with a time limit."""

    def __init__(self, proc: subprocess.Popen):
        self.fd, self.buffer = proc.stdout.fileno(), b""

    def next(self, timeout: float):
        """The next message; None at end of output; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


def run_worker(job: Path, cases: list, stderr_path: Path) -> tuple[dict, list[str]]:
    """Run every case through worker processes (a fresh one after a crash or a timeout).
    Returns the reports by case id and the problems no report can show."""
    reports, problems, first, starts = {}, [], 0, 0
    index = {case_id: i for i, (case_id, _) in enumerate(cases)}
    while first < len(cases) and starts < 6:
        starts += 1
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen([sys.executable, str(WORKER), str(job), str(first)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, env=SUBPROCESS_ENV)
        lines, current, step = _Lines(proc), None, None
        try:
            message = lines.next(WARM_UP_SECONDS)
            if message is None or "ready" not in message:
                proc.wait(10)
                problems.append(f"the worker did not start (exit {proc.returncode}): "
                                f"{message} {stderr_path.read_text()[-3000:]}")
                break
            while True:
                message = lines.next(PER_CASE_SECONDS)
                if message is None:
                    proc.wait(10)
                    if current is not None:
                        problems.append(f"{current}: the worker died (exit {proc.returncode}"
                                        f"): {stderr_path.read_text()[-2000:]}")
                        first = index[current] + 1
                    else:
                        first = len(cases)
                    break
                if "start" in message:
                    current, step = message["start"], None
                elif "step" in message:
                    step = message["step"]
                else:
                    reports[message["case"]] = message
                    current, first = None, index[message["case"]] + 1
        except TimeoutError:
            problems.append(f"{current}: no result within {PER_CASE_SECONDS} s (in {step}): "
                            f"{stderr_path.read_text()[-2000:]}")
            first = (index[current] + 1) if current is not None else len(cases)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.stdout.close()
    return reports, problems


def judge(case_id: str, path: str, report: dict) -> str | None:
    """None for an acceptable outcome, else what is wrong.

    Acceptable: every step succeeds; or loading (and ``info``) fails with a one-line
    ModelFileError naming the file; or a later step fails with a one-line ValueError (say, a
    partial_fit label the file's classes lack), or training from huge but finite weights stops
    with the estimator's one-line "training diverged" FloatingPointError (the command line
    prints it as an error line).
    """
    if report["rss_growth_mb"] > MAX_RSS_GROWTH_MB:
        return f"peak memory grew {report['rss_growth_mb']:.0f} MB"
    for step in report["steps"]:
        if step["ok"]:
            continue
        message = step["message"].strip()
        one_line = message and "\n" not in message and "Traceback" not in message
        loading = step["step"] in ("load", "info")
        if step["type"] == "ModelFileError" and one_line and (
                not loading or message.startswith(f"{path}: ")):
            return None
        if step["value_error"] and one_line and not loading:
            return None
        if step["type"] == "FloatingPointError" and one_line and message.startswith(
                "training diverged") and step["step"] in ("partial_fit", "continue_fit"):
            return None
        return f"{step['step']}: {step['type']}: {message[:300]}\n{step['traceback']}"
    return None


# Hypothesis explores by varying earlier examples, so some repeat: twice the examples are drawn
# and the first N_CASES distinct mutations kept.
@settings(deadline=None, database=None, derandomize=True, max_examples=2 * N_CASES,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _generate(data, base, out, made):
    config, arrays = json.loads(json.dumps(base[0])), {k: v.copy() for k, v in base[1].items()}
    config, arrays, overrides, notes = mutate(data, config, arrays)
    if len(made) >= N_CASES or not notes or any("; ".join(notes) == m[3] for m in made):
        return
    case_id = f"case{len(made):03d}"
    path = out / f"{case_id}.tagger"
    how = write_model(path, config, arrays, **overrides)
    made.append((case_id, str(path), f"[{how}] " + "; ".join(notes), "; ".join(notes)))


def test_fuzzed_model_files_load_predict_and_resume_or_fail_cleanly(files, tmp_path):
    start = time.perf_counter()
    base = read_model(files.checkpoint)
    made: list = []
    _generate(base=base, out=tmp_path, made=made)
    assert len(made) == N_CASES
    generated = time.perf_counter() - start
    X = [list(s) for s in files.X[:4]]
    y = [list(t) for t in files.y[:4]]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "warm": str(files.checkpoint), "X": X, "y": y, "raw": "Anna lives in Oslo .",
        "data_limit_mb": 2 * MAX_RSS_GROWTH_MB,
        "cases": [[case_id, path] for case_id, path, _, _ in made]}))
    reports, problems = run_worker(job, [(c, p) for c, p, _, _ in made], tmp_path / "stderr.txt")
    notes = {case_id: note for case_id, _, note, _ in made}
    failures = [f"{problem}\n  mutation: {notes.get(problem.split(':')[0], '?')}"
                for problem in problems]
    outcomes = {"loaded": 0, "refused": 0}
    errors: Counter = Counter()
    for case_id, path, note, _ in made:
        if case_id not in reports:
            continue
        report = reports[case_id]
        outcomes["loaded" if report["steps"][0]["ok"] else "refused"] += 1
        errors.update(f"{step['step']}: {step['type']}" for step in report["steps"]
                      if not step["ok"])
        verdict = judge(case_id, path, report)
        if verdict is not None:
            failures.append(f"{case_id} ({note}): {verdict}")
    missing = [c for c, _, _, _ in made if c not in reports and not any(
        p.startswith(f"{c}:") for p in problems)]
    elapsed = time.perf_counter() - start
    print(f"{len(made)} cases ({outcomes}; errors {dict(errors)}) in {elapsed:.1f} s "
          f"({generated:.1f} s generating)")
    assert not failures, "\n\n".join(failures[:8]) + f"\n\n{len(failures)} failures in all"
    assert not missing, missing
    # Both ends are exercised: files that still load and run, and files refused.
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= N_CASES // 3, outcomes
