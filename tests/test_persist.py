"""Tests of tagger.persist: round trips, the safetensors layout, atomic writes, and one clear
ModelFileError per kind of damage or tampering, raised before any array data is read."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tagger import persist
from tagger._version import __version__
from tagger.errors import ModelFileError
from tagger.persist import (
    FORMAT_VERSION,
    file_checksum_status,
    load_model,
    read_config,
    read_header,
    save_model,
)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "W": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=4),
        "ids": np.arange(5, dtype=np.int64),
        "small_ids": np.array([[1, -2], [3, 4]], dtype=np.int32),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 7), dtype=np.float64),
        "half": np.array([0.5, -1.0], dtype=np.float16),
        "u8": np.array([0, 255], dtype=np.uint8),
        "big_endian": np.array([1.5, 2.5], dtype=">f4"),
        "fortran": np.asfortranarray(rng.normal(size=(2, 3))).astype(np.float32, order="F"),
        # Names np.savez(file, **arrays) would take for its own parameters.
        "file": np.ones(1),
        "allow_pickle": np.ones(1),
    }


def _config() -> dict:
    return {
        "hidden": 64,
        "lr": 0.001,
        "labels": ["O", "B-PER", "I-PER"],
        "vocab": {"words": ["<pad>", "<unk>", "Zürich", "東京", "naïve 🙂"], "min_count": 1},
        "nested": {"a": [1, 2.5, None, True, {"deep": "x"}], "empty": {}, "none": None},
        "scheme": "IOB2",
    }


def _assert_arrays_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype.newbyteorder("="), name
        assert got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def _split(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict, body: bytes, fix_digests: bool = True) -> bytes:
    """A format-2 file from a header and a body; digests recomputed as a forger would."""
    meta = header.get("__metadata__")
    if fix_digests and isinstance(meta, dict) and "config" in meta:
        meta["config_sha256"] = hashlib.sha256(meta["config"].encode()).hexdigest()
        if "data_sha256" in meta:
            meta["data_sha256"] = hashlib.sha256(body).hexdigest()
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def _edit(path, edit, fix_digests: bool = True) -> None:
    header, body = _split(path.read_bytes())
    body = edit(header, body) or body
    path.write_bytes(_join(header, body, fix_digests))


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.tagger"
    save_model(path, "SequenceTagger", _config(), _arrays())
    return path


# ---------------------------------------------------------------------------------------------
# round trips and layout
# ---------------------------------------------------------------------------------------------


def test_round_trip_preserves_arrays_and_config(model):
    config, arrays = load_model(model, kind="SequenceTagger")
    _assert_arrays_equal(arrays, _arrays())
    assert config == {
        "format": "tagger-model",
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": "SequenceTagger",
        **_config(),
    }
    assert read_config(model) == config
    assert file_checksum_status(model) == "ok"
    for array in arrays.values():  # ready for the kernels, and for training in place
        assert array.flags.c_contiguous and array.flags.aligned and array.flags.writeable
        assert array.dtype.isnative


def test_header_describes_the_arrays_without_reading_them(model):
    header = read_header(model)
    assert header.format_version == 2
    assert header.arrays["W"] == ((3, 4), np.dtype("<f4"))
    assert header.arrays["scalar"] == ((), np.dtype("<f4"))
    assert header.data_bytes == sum(a.nbytes for a in _arrays().values())


def test_the_safetensors_library_reads_our_files_and_we_read_its(model, tmp_path):
    numpy_reader = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    theirs = numpy_reader.load_file(str(model))
    _assert_arrays_equal({k: v.astype(v.dtype.newbyteorder("=")) for k, v in theirs.items()},
                         _arrays())
    with safe_open(str(model), "numpy") as fh:
        metadata = fh.metadata()
    assert json.loads(metadata["config"])["hidden"] == 64
    # A file the library writes, with our metadata, loads here.
    other = tmp_path / "theirs.tagger"
    numpy_reader.save_file({"W": _arrays()["W"], "ids": _arrays()["ids"]}, str(other),
                           metadata={**metadata, "data_sha256": "0" * 64})
    _edit(other, lambda header, body: None)  # the data digest of the library's layout
    config, arrays = load_model(other)
    assert config["hidden"] == 64
    _assert_arrays_equal(arrays, {"W": _arrays()["W"], "ids": _arrays()["ids"]})


def test_arrays_are_aligned_in_the_file(model):
    header, _ = _split(model.read_bytes())
    n = int.from_bytes(model.read_bytes()[:8], "little")
    assert n % 8 == 0
    for name, entry in header.items():
        if name != "__metadata__":
            itemsize = np.dtype(persist._CODES[entry["dtype"]]).itemsize
            assert entry["data_offsets"][0] % itemsize == 0, name


def test_saving_twice_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_model(a, "SequenceTagger", _config(), _arrays())
    save_model(b, "SequenceTagger", _config(), dict(reversed(list(_arrays().items()))))
    assert a.read_bytes() == b.read_bytes()


def test_numpy_scalars_and_tuples_in_config_become_json(tmp_path):
    path = tmp_path / "m"
    save_model(
        path, "K", {"n": np.int64(3), "x": np.float32(0.5), "f": np.bool_(True), "t": (1, 2)}, {}
    )
    config = read_config(path)
    assert config["n"] == 3 and type(config["n"]) is int
    assert config["x"] == 0.5 and type(config["x"]) is float
    assert config["f"] is True
    assert config["t"] == [1, 2]


def test_save_replaces_existing_file_and_keeps_its_mode(model):
    os.chmod(model, 0o640)
    save_model(model, "SequenceTagger", {"v": 2}, {"a": np.ones(2)})
    assert read_config(model)["v"] == 2
    assert os.stat(model).st_mode & 0o777 == 0o640


def test_new_file_gets_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(tmp_path / "m", "K", {}, {})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m").st_mode & 0o777 == 0o644


_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
_float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": False},
)


@settings(max_examples=40, deadline=None)
@given(arrays=st.dictionaries(_names, _float_arrays, max_size=5))
def test_property_random_arrays_round_trip(arrays):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m.tagger")
        save_model(path, "K", {"n": len(arrays)}, arrays)
        _config_back, back = load_model(path, kind="K")
        assert file_checksum_status(path) == "ok"
    _assert_arrays_equal(back, arrays)


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["os.replace", "os.fsync", "write"])
def test_failed_write_leaves_previous_file_and_no_temporaries(model, monkeypatch, target):
    before = model.read_bytes()
    calls = []

    def boom(*args, **kwargs):
        calls.append(args)
        raise OSError("disk full (simulated)")

    if target == "os.replace":
        monkeypatch.setattr(persist.os, "replace", boom)
    elif target == "os.fsync":
        monkeypatch.setattr(persist.os, "fsync", boom)
    else:
        real_fdopen = os.fdopen

        class Failing(io.BufferedWriter):
            def write(self, data):
                super().write(data[: len(data) // 2])
                boom()

        monkeypatch.setattr(persist.os, "fdopen",
                            lambda fd, mode: Failing(real_fdopen(fd, "wb", buffering=0)))
    with pytest.raises(OSError, match="disk full"):
        save_model(model, "SequenceTagger", {"v": 2}, {"a": np.ones(3)})
    assert calls, "the patched function was never reached"
    assert model.read_bytes() == before
    assert os.listdir(model.parent) == [model.name]


def test_keyboard_interrupt_mid_write_removes_the_temporary(tmp_path, monkeypatch):
    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(persist.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "m", "K", {}, {"a": np.ones(2)})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("config", "arrays", "error", "match"),
    [
        ({"v": np.ones(2)}, {}, TypeError, r"config\['v'\] is a numpy.ndarray"),
        ({"a": {"b": [1, object()]}}, {}, TypeError, r"config\['a'\]\['b'\]\[1\] is not JSON"),
        ({"a": {1: "x"}}, {}, TypeError, r"config\['a'\] has a key 1"),
        ({"a": float("nan")}, {}, ValueError, r"config\['a'\] is nan"),
        ({"kind": "x"}, {}, ValueError, "container's own keys"),
        ({}, {"o": np.array([{"x": 1}], dtype=object)}, TypeError, "'o' has dtype object"),
        ({}, {"s": np.array(["abc"])}, TypeError, "'s' has dtype <U3"),
        ({}, {"z": np.array([1j])}, TypeError, "'z' has dtype complex128"),
        ({}, {"a/b": np.ones(1)}, ValueError, "invalid array name 'a/b'"),
        ({}, {"": np.ones(1)}, ValueError, "invalid array name ''"),
        ({}, {"l": [1.0, 2.0]}, TypeError, "'l' must be a numpy.ndarray"),
        ({}, {"w": np.array([1.0, np.nan], np.float32)}, ValueError, "'w' holds NaN or inf"),
        ({}, {"w": np.array([np.inf])}, ValueError, "non-finite weights"),
    ],
)
def test_invalid_save_arguments_raise_and_write_nothing(tmp_path, config, arrays, error, match):
    with pytest.raises(error, match=match):
        save_model(tmp_path / "m", "K", config, arrays)
    assert os.listdir(tmp_path) == []


def test_invalid_kind_raises(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        save_model(tmp_path / "m", "", {}, {})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# damaged and tampered files
# ---------------------------------------------------------------------------------------------


def _expect_error(path, match, **kwargs):
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, "the message must name the file"
    assert "\n" not in message
    return info.value


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.tagger", "no such model file")
    assert "no such model file" in file_checksum_status(tmp_path / "nope.tagger")


def test_directory_is_not_a_model(tmp_path):
    _expect_error(tmp_path, "not a regular file")


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -1])
def test_truncated_file(model, keep):
    data = model.read_bytes()
    model.write_bytes(data[:keep] if keep >= 0 else data[:-3])
    _expect_error(model, "too short|truncated|header")


def test_random_garbage(tmp_path):
    path = tmp_path / "garbage.tagger"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    _expect_error(path, "not a tagger model file")


def test_header_length_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.tagger"
    path.write_bytes((2**40).to_bytes(8, "little") + b"{}")
    _expect_error(path, "more than the limit")
    monkeypatch.setattr(persist, "MAX_HEADER_BYTES", 16)
    save_model(path, "K", _config(), {})
    _expect_error(path, "more than the limit of 16")


def test_header_not_json_or_not_an_object(tmp_path):
    path = tmp_path / "m"
    path.write_bytes((8).to_bytes(8, "little") + b"{nojson}")
    _expect_error(path, "not valid JSON")
    path.write_bytes((8).to_bytes(8, "little") + b"[1,2,3] ")
    _expect_error(path, "not a JSON object")


def test_plain_safetensors_file_is_not_a_model(tmp_path):
    numpy_reader = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "plain.safetensors"
    numpy_reader.save_file({"W": np.ones(2, np.float32)}, str(path))
    _expect_error(path, "no tagger metadata")


def test_newer_format_version_says_upgrade(model):
    def newer(header, body):
        header["__metadata__"]["format_version"] = "3"

    _edit(model, newer)
    _expect_error(model, "newer tagger.*upgrade tagger")


def test_wrong_kind(model):
    _expect_error(model, "holds a 'SequenceTagger' model, expected a 'Other' model", kind="Other")


def test_config_digest_mismatch(model):
    def tamper(header, body):
        header["__metadata__"]["config"] = header["__metadata__"]["config"].replace("64", "65")

    _edit(model, tamper, fix_digests=False)
    _expect_error(model, "checksum mismatch for the config")
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        read_config(model)


def test_flipped_data_byte_is_caught(model):
    data = bytearray(model.read_bytes())
    data[-5] ^= 0x40
    model.write_bytes(bytes(data))
    _expect_error(model, "checksum mismatch for array data")
    assert "checksum mismatch" in file_checksum_status(model)
    read_config(model)  # the config alone is intact


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h["W"].update(data_offsets=[0, 4]), "takes 48 bytes but its offsets span 4"),
        (lambda h: h["W"].update(shape=[3, -4]), "invalid shape"),
        (lambda h: h["W"].update(shape=[10**9, 10**9]), "takes .* bytes but its offsets"),
        (lambda h: h["W"].update(shape=[1] * 9), "invalid shape"),
        (lambda h: h["W"].update(dtype="O"), "has dtype 'O'"),
        (lambda h: h["W"].update(dtype="C64"), "has dtype 'C64'"),
        (lambda h: h["W"].update(extra=1), "exactly dtype, shape and data_offsets"),
        (lambda h: h.update({"../evil": h.pop("W")}), "invalid array name"),
        (lambda h: h["b"].update(data_offsets=[h["b"]["data_offsets"][0] + 8,
                                               h["b"]["data_offsets"][1] + 8]),
         "overlap or leave a gap|the arrays take"),
        (lambda h: h.update(x={"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}),
         "overlap or leave a gap"),
        (lambda h: h.pop("ids"), "overlap or leave a gap|the arrays take"),
        (lambda h: h["__metadata__"].pop("data_sha256"), "must hold the strings"),
        (lambda h: h.update(__metadata__=[1]), "no tagger metadata"),
    ],
)
def test_tampered_array_table_is_refused(model, edit, match):
    _edit(model, lambda header, body: edit(header) and None)
    _expect_error(model, match)


def test_extra_bytes_after_the_arrays_are_refused(model):
    _edit(model, lambda header, body: body + b"\0" * 16)
    _expect_error(model, "the arrays take .* bytes but the file holds")


def test_header_declaring_a_huge_array_in_a_small_file(tmp_path):
    """Refused from the header alone: nothing of the declared size is allocated."""
    path = tmp_path / "m"
    save_model(path, "K", {}, {"W": np.ones(4, np.float32)})
    _edit(path, lambda h, b: h["W"].update(shape=[500_000_000],
                                           data_offsets=[0, 2_000_000_000]))
    _expect_error(path, "the file holds 16")
    with pytest.raises(ModelFileError):
        read_header(path)


def test_non_finite_weights_are_refused_at_load(model):
    def nan(header, body):
        begin = header["W"]["data_offsets"][0]
        return body[:begin] + np.float32(np.nan).tobytes() + body[begin + 4 :]

    _edit(model, nan)
    _expect_error(model, "'W' holds NaN or infinity")


# ---------------------------------------------------------------------------------------------
# expected arrays, checked before the data is read
# ---------------------------------------------------------------------------------------------


def _spec(**changes):
    spec = {name: (a.shape, a.dtype.newbyteorder("=").name) for name, a in _arrays().items()}
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


def test_expected_matching_passes(model):
    load_model(model, expected=_spec())
    load_model(model, expected=_spec(W=((None, 4), "float32")))
    load_model(model, expected=_spec(optional=((2,), "float32", False)))
    load_model(model, expected=lambda config: _spec() if config["hidden"] == 64 else {})


def test_expected_missing_extra_shape_dtype(model):
    _expect_error(model, "missing arrays: 'more'", expected=_spec(more=((1,), "float32")))
    _expect_error(model, "unexpected arrays: 'W'", expected=_spec(W=None))
    _expect_error(model, r"array 'W' has shape \(3, 4\), expected \(3, 5\)",
                  expected=_spec(W=((3, 5), "float32")))
    _expect_error(model, r"expected \(\*, 4, 1\)", expected=_spec(W=((None, 4, 1), "float32")))
    _expect_error(model, "array 'W' has dtype float32, expected float64",
                  expected=_spec(W=((3, 4), "float64")))


def test_expected_is_checked_before_the_data_is_read(model, monkeypatch):
    def no_read(*args):
        raise AssertionError("array data read before the header was checked")

    monkeypatch.setattr(persist, "_read_data", no_read)
    _expect_error(model, "array 'W' has shape", expected=_spec(W=((3, 5), "float32")))

    def refuse(config):
        raise ModelFileError(f"x: refused from the config ({config['hidden']})")

    with pytest.raises(ModelFileError, match=r"refused from the config \(64\)"):
        load_model(model, expected=refuse)


# ---------------------------------------------------------------------------------------------
# format 1 (zip) files
# ---------------------------------------------------------------------------------------------


def _write_format1(path, config: dict, arrays: dict, weights_compression=zipfile.ZIP_STORED,
                   inner_compression=zipfile.ZIP_STORED) -> None:
    """A format-1 model file as tagger 0.1 wrote it (optionally with compressed members)."""
    full = {"format": "tagger-model", "format_version": 1, "library_version": "0.1.0",
            "kind": "K", **config}
    config_bytes = json.dumps(full).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", inner_compression) as npz:
        for name, array in arrays.items():
            with npz.open(name + ".npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    weights = buffer.getvalue()
    sums = {"config.json": hashlib.sha256(config_bytes).hexdigest(),
            "weights.npz": hashlib.sha256(weights).hexdigest()}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config_bytes, zipfile.ZIP_DEFLATED)
        archive.writestr("weights.npz", weights, weights_compression)
        archive.writestr("checksums.json", json.dumps(sums), zipfile.ZIP_DEFLATED)


def test_format1_files_still_load(tmp_path):
    path = tmp_path / "old.tagger"
    arrays = {"W": np.ones((3, 4), np.float32), "steps": np.array(7, np.int64)}
    _write_format1(path, {"hidden": 3}, arrays)
    config, back = load_model(path, kind="K", expected={"W": ((3, 4), "float32"),
                                                        "steps": ((), "int64")})
    assert config["format_version"] == 1 and config["hidden"] == 3
    _assert_arrays_equal(back, arrays)
    assert read_header(path).arrays["W"] == ((3, 4), np.dtype("float32"))
    assert file_checksum_status(path) == "ok"


@pytest.mark.parametrize("where", ["outer", "inner"])
def test_format1_compressed_weights_are_refused_unread(tmp_path, where):
    """A compression bomb: 400 MB of zeros in a file of a few hundred kB, refused before one
    byte of it is inflated."""
    path = tmp_path / "bomb.tagger"
    big = np.zeros(100_000_000, np.float32)
    if where == "outer":
        _write_format1(path, {}, {"W": big}, weights_compression=zipfile.ZIP_DEFLATED)
    else:
        _write_format1(path, {}, {"W": big}, inner_compression=zipfile.ZIP_DEFLATED)
    del big
    assert path.stat().st_size < 2_000_000
    _expect_error(path, "compressed; tagger never wrote it so")


def test_format1_damage(tmp_path):
    path = tmp_path / "old.tagger"
    _write_format1(path, {}, {"W": np.ones(2, np.float32)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "not a readable zip archive")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    _expect_error(path, "not a complete tagger model file")
    _write_format1(path, {}, {"W": np.ones(2, np.float32)})
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["weights.npz"] = members["weights.npz"].replace(b"<f4", b"|O8")
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(name, value)
    _expect_error(path, "pickled objects are never loaded|not a readable|cannot read")


def test_format1_config_inflating_far_beyond_json_is_refused_unread(tmp_path):
    path = tmp_path / "old.tagger"
    _write_format1(path, {"pad": "a" * 5_000_000}, {"W": np.ones(2, np.float32)})
    _expect_error(path, "far more than JSON compresses")


def test_a_safetensors_file_must_say_format_2(model):
    def older(header, body):
        header["__metadata__"]["format_version"] = "1"

    _edit(model, older)
    _expect_error(model, "must be format 2")


def test_format1_array_claiming_more_bytes_than_the_archive_holds_is_refused(tmp_path):
    """A stored .npy whose zip entry claims 4 GB in a file of a few kB: refused from the sizes,
    before NumPy would allocate the declared shape."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000_000,)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as npz:
        npz.writestr("W.npy", header.getvalue() + b"\0" * 16)
        info = npz.getinfo("W.npy")
        info.file_size = info.compress_size = len(header.getvalue()) + 4_000_000_000
    weights = buffer.getvalue()
    config = json.dumps({"format": "tagger-model", "format_version": 1, "kind": "K"}).encode()
    path = tmp_path / "lying.tagger"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("weights.npz", weights)
        archive.writestr("checksums.json", json.dumps(
            {"config.json": hashlib.sha256(config).hexdigest(),
             "weights.npz": hashlib.sha256(weights).hexdigest()}))
    _expect_error(path, "claims .* bytes, more than weights.npz holds|not a readable|cannot read")


def test_save_follows_a_link_and_refuses_a_device(tmp_path):
    target = tmp_path / "real.tagger"
    link = tmp_path / "link.tagger"
    save_model(target, "K", {"v": 1}, {})
    link.symlink_to(target)
    save_model(link, "K", {"v": 2}, {})
    assert link.is_symlink() and read_config(target)["v"] == 2
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        save_model(fifo, "K", {}, {})
    assert fifo.exists() and not fifo.is_file()
