"""Tests of tagger.persist: round trips, atomic writes, and a clear ModelFileError per damage."""

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
        "fortran": np.asfortranarray(rng.normal(size=(2, 3))).astype(np.float32, order="F"),
        "u8": np.array([0, 255], dtype=np.uint8),
        "z": np.array([1 + 2j], dtype=np.complex64),
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
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def _zip(path, members: dict[str, bytes]) -> None:
    """Write a zip archive with exactly these members (to build damaged model files by hand)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _checksums(members: dict[str, bytes]) -> bytes:
    return json.dumps(
        {name: hashlib.sha256(members[name]).hexdigest() for name in ("config.json", "weights.npz")}
    ).encode()


def _with_valid_checksums(members: dict[str, bytes]) -> dict[str, bytes]:
    return {**members, "checksums.json": _checksums(members)}


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.tagger"
    save_model(path, "SequenceTagger", _config(), _arrays())
    return path


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_round_trip_preserves_arrays_and_config(model):
    config, arrays = load_model(model, kind="SequenceTagger")
    _assert_arrays_equal(arrays, _arrays())
    assert arrays["fortran"].flags.f_contiguous
    assert config == {
        "format": "tagger-model",
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": "SequenceTagger",
        **_config(),
    }
    assert read_config(model) == config
    assert file_checksum_status(model) == "ok"


def test_layout_is_config_weights_checksums(model):
    members = _members(model)
    assert list(members) == ["config.json", "weights.npz", "checksums.json"]
    # weights.npz is a standard .npz that plain NumPy reads without pickle.
    with np.load(io.BytesIO(members["weights.npz"]), allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["W"], _arrays()["W"])
    assert json.loads(members["checksums.json"]) == json.loads(_checksums(members))
    with zipfile.ZipFile(model) as archive:
        assert archive.getinfo("weights.npz").compress_type == zipfile.ZIP_STORED


def test_saving_twice_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_model(a, "SequenceTagger", _config(), _arrays())
    save_model(b, "SequenceTagger", _config(), _arrays())
    assert a.read_bytes() == b.read_bytes()
    # Fixed timestamps: equal bytes do not depend on both saves falling in the same second.
    for path in (a, b):
        with zipfile.ZipFile(path) as archive:
            assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


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
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": False},
)


@settings(max_examples=40, deadline=None)
@given(arrays=st.dictionaries(_names, _float_arrays, max_size=5))
def test_property_random_float_arrays_round_trip(arrays):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "m.tagger")
        save_model(path, "K", {"n": len(arrays)}, arrays)
        _config_back, back = load_model(path, kind="K")
    _assert_arrays_equal(back, arrays)


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["os.replace", "os.fsync", "zip.writestr"])
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
        # Fail on the second member, after part of the archive has been written.
        real = zipfile.ZipFile.writestr

        def writestr(self, info, data, *args, **kwargs):
            if getattr(info, "filename", info) == "weights.npz":
                boom()
            return real(self, info, data, *args, **kwargs)

        monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
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
        ({}, {"a/b": np.ones(1)}, ValueError, "invalid array name 'a/b'"),
        ({}, {"": np.ones(1)}, ValueError, "invalid array name ''"),
        ({}, {"l": [1.0, 2.0]}, TypeError, "'l' must be a numpy.ndarray"),
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
# damaged files
# ---------------------------------------------------------------------------------------------


def _expect_error(path, match, **kwargs):
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path, **kwargs)
    assert str(path) in str(info.value), "the message must name the file"
    return info.value


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.tagger", "no such model file")
    assert "no such model file" in file_checksum_status(tmp_path / "nope.tagger")


def test_directory_is_not_a_model(tmp_path):
    _expect_error(tmp_path, "not a regular file")


def test_truncated_file(model):
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    _expect_error(model, "not a readable zip archive")


def test_random_garbage(tmp_path):
    path = tmp_path / "garbage.tagger"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    _expect_error(path, "not a readable zip archive")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tagger"
    path.write_bytes(b"")
    _expect_error(path, "not a readable zip archive")


def test_zip_without_weights(model):
    members = _members(model)
    del members["weights.npz"]
    _zip(model, members)
    _expect_error(model, "no weights.npz")


def test_zip_without_config(model):
    members = _members(model)
    del members["config.json"]
    _zip(model, members)
    _expect_error(model, "no config.json")


def test_zip_with_unknown_member(model):
    _zip(model, {**_members(model), "../evil.sh": b"rm -rf /"})
    _expect_error(model, "unexpected members")


def test_invalid_json_config(model):
    members = _members(model)
    members["config.json"] = b'{"format": "tagger-model", '
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "config.json is not valid JSON")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_config(model)


def test_config_not_an_object(model):
    members = _members(model)
    members["config.json"] = b"[1, 2]"
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "must hold a JSON object")


def test_wrong_format(model):
    members = _members(model)
    config = json.loads(members["config.json"])
    config["format"] = "something-else"
    members["config.json"] = json.dumps(config).encode()
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "not a tagger model file")


def test_newer_format_version_says_upgrade(model):
    members = _members(model)
    config = json.loads(members["config.json"])
    config["format_version"] = 99
    members["config.json"] = json.dumps(config).encode()
    # A newer layout may lack the members this version knows; the version check comes first.
    del members["checksums.json"]
    members["tensors.bin"] = b"\0"
    _zip(model, members)
    error = _expect_error(model, r"newer tagger \(format 99")
    assert "reads format 1" in str(error) and "upgrade tagger" in str(error)
    with pytest.raises(ModelFileError, match="upgrade tagger"):
        read_config(model)


def test_wrong_kind(model):
    _expect_error(
        model,
        "holds a 'SequenceTagger' model, expected a 'SequenceClassifier'",
        kind="SequenceClassifier",
    )
    with pytest.raises(ModelFileError, match="expected a 'SequenceClassifier'"):
        read_config(model, kind="SequenceClassifier")


def test_tampered_weights_checksum_mismatch(model):
    members = _members(model)
    arrays = _arrays()
    arrays["W"][0, 0] += 1.0
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if k not in ("file", "allow_pickle")})
    members["weights.npz"] = buffer.getvalue()
    _zip(model, members)  # the old checksums.json
    _expect_error(model, "checksum mismatch for weights.npz")
    assert "checksum mismatch for weights.npz" in file_checksum_status(model)
    # read_config does not read the weights, so it still succeeds.
    assert read_config(model)["kind"] == "SequenceTagger"


def test_tampered_config_checksum_mismatch(model):
    members = _members(model)
    config = json.loads(members["config.json"])
    config["labels"] = ["O", "B-LOC"]
    members["config.json"] = json.dumps(config).encode()
    _zip(model, members)
    _expect_error(model, "checksum mismatch for config.json")
    with pytest.raises(ModelFileError, match="checksum mismatch for config.json"):
        read_config(model)


def test_flipped_byte_in_stored_weights_is_caught(model):
    data = bytearray(model.read_bytes())
    with zipfile.ZipFile(model) as archive:
        info = archive.getinfo("weights.npz")
    # The middle of the stored (uncompressed) weights member: a flipped bit in the arrays.
    data[info.header_offset + 100 + info.compress_size // 2] ^= 0x01
    model.write_bytes(bytes(data))
    # zipfile's CRC check or the sha256 catches it, depending on where the byte lands.
    _expect_error(model, "corrupted")


def test_bad_checksums_member(model):
    members = _members(model)
    members["checksums.json"] = b'{"config.json": 1}'
    _zip(model, members)
    _expect_error(model, "checksums.json must map")


def test_member_over_size_limit_is_refused(model, monkeypatch):
    monkeypatch.setattr(persist, "MAX_MEMBER_BYTES", 1000)
    _expect_error(model, "more than the limit of 1000")


# Set by _Payload's unpickling. If a loader ever unpickles the payload, this flag flips.
_CODE_RAN: list[str] = []


def _run_code(marker: str) -> str:
    _CODE_RAN.append(marker)
    return marker


class _Payload:
    def __reduce__(self):
        return (_run_code, ("pwned",))


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, W=np.ones(2, dtype=np.float32), evil=np.array([_Payload()], dtype=object))
    return buffer.getvalue()


def test_pickle_payload_is_really_executable_by_a_naive_loader():
    # Proves the next test can fail: loading this npz with allow_pickle=True does run code.
    _CODE_RAN.clear()
    with np.load(io.BytesIO(_pickled_npz()), allow_pickle=True) as npz:
        npz["evil"]
    assert _CODE_RAN == ["pwned"]
    _CODE_RAN.clear()


def test_object_array_is_refused_without_running_code(model):
    _CODE_RAN.clear()
    members = _members(model)
    members["weights.npz"] = _pickled_npz()
    _zip(model, _with_valid_checksums(members))  # valid checksums: only the pickle check remains
    _expect_error(model, "'evil' has dtype object")
    assert _CODE_RAN == []


def test_object_array_refused_by_numpy_too_if_prepass_is_skipped(model, monkeypatch):
    # The second line of defence: np.load(allow_pickle=False) alone, its ValueError converted.
    monkeypatch.setattr(persist, "_check_npy_member", lambda *args: None)
    _CODE_RAN.clear()
    members = _members(model)
    members["weights.npz"] = _pickled_npz()
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "cannot load the arrays in weights.npz")
    assert _CODE_RAN == []


def test_npz_header_claiming_a_huge_shape_is_refused(model):
    # A valid header for 10**10 float64 (80 GB) followed by 32 bytes: NumPy alone would try to
    # allocate the whole array before noticing the data is short.
    forged = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**10,)}
    np.lib.format.write_array_header_1_0(forged, header)
    forged.write(np.ones(4).tobytes())
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("W.npy", forged.getvalue())
    members = _members(model)
    members["weights.npz"] = npz.getvalue()
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "'W': its header says shape")


def test_npz_with_non_array_member_is_refused(model):
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("notes.txt", b"hello")
    members = _members(model)
    members["weights.npz"] = npz.getvalue()
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "unexpected member 'notes.txt'")


def test_garbage_weights_npz(model):
    members = _members(model)
    members["weights.npz"] = b"not a zip at all"
    _zip(model, _with_valid_checksums(members))
    _expect_error(model, "weights.npz is not a readable .npz")


# ---------------------------------------------------------------------------------------------
# expected names, shapes, dtypes
# ---------------------------------------------------------------------------------------------


def _expected() -> dict:
    return {name: (array.shape, str(array.dtype)) for name, array in _arrays().items()}


def test_expected_matching_passes(model):
    load_model(model, expected=_expected())
    wildcard = {**_expected(), "W": ((None, 4), "float32")}
    load_model(model, expected=wildcard)


def test_expected_missing_array(model):
    expected = {**_expected(), "transitions": ((3, 3), "float32")}
    _expect_error(model, r"missing arrays: \['transitions'\]", expected=expected)


def test_expected_extra_array(model):
    expected = _expected()
    del expected["mask"]
    _expect_error(model, r"unexpected arrays: \['mask'\]", expected=expected)


@pytest.mark.parametrize("shape", [(4, 3), (3,), (3, 4, 1), (None, 5)])
def test_expected_wrong_shape(model, shape):
    expected = {**_expected(), "W": (shape, "float32")}
    _expect_error(model, r"array 'W' has shape \(3, 4\), expected", expected=expected)


def test_expected_wrong_dtype(model):
    expected = {**_expected(), "W": ((3, 4), "float64")}
    _expect_error(model, "array 'W' has dtype float32, expected float64", expected=expected)
