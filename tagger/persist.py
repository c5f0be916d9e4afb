"""Safe, pickle-free model files: one zip archive with a JSON config and an ``.npz`` of weights.

Layout of a model file (format 1)
---------------------------------
A model file is a zip archive holding exactly three members, in this order:

``config.json``
    A UTF-8 JSON object: the caller's config plus the container's own entries ``"format"``
    (always ``"tagger-model"``), ``"format_version"`` (:data:`FORMAT_VERSION`),
    ``"library_version"`` (the tagger that wrote it) and ``"kind"`` (what the weights belong to,
    e.g. ``"SequenceTagger"``). Stored deflated.
``weights.npz``
    A standard, uncompressed NumPy ``.npz`` archive (one ``<name>.npy`` member per array, written
    with ``allow_pickle=False``). Stored without compression inside the outer zip too: trained
    float weights barely compress (about 8 % on random-like float32) while deflate makes saving
    roughly 15x and loading roughly 8x slower.
``checksums.json``
    ``{"config.json": "<sha256 hex>", "weights.npz": "<sha256 hex>"}``: the digests of the exact
    member bytes. Keeping them in their own member, rather than inside the config, means no
    member has to checksum itself and ``read_config`` can verify the config without touching the
    weights.

The checksums detect corruption (a truncated copy, a flipped bit, a half-edited archive), not a
deliberate forger, who can recompute them. The loader is therefore written to be safe on a
hand-crafted hostile file as well: nothing is ever unpickled (``allow_pickle=False`` everywhere,
object and structured dtypes rejected before any array is read), only the three known member
names are accepted, and member sizes are bounded by :data:`MAX_MEMBER_BYTES`.

Forward compatibility: the loader reads ``config.json`` first and checks ``"format"`` and
``"format_version"`` before anything else about the layout, so that a file written by a newer
tagger gets the message "upgrade tagger" rather than a complaint about its members. Every future
format must keep ``config.json`` with those two keys.

Files are byte-for-byte reproducible: the same kind, config and arrays give the same bytes
(fixed member timestamps, fixed member order, arrays in the caller's dict order).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ModelFileError

__all__ = [
    "CONTAINER_KEYS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_MEMBER_BYTES",
    "file_checksum_status",
    "load_model",
    "read_config",
    "save_model",
]

#: Value of the ``"format"`` entry of every model file's config.
FORMAT = "tagger-model"
#: The newest layout this tagger writes and reads.
FORMAT_VERSION = 1
#: Largest uncompressed size accepted for any member of the outer zip or of ``weights.npz``.
#: A modest zip-bomb guard; tests may patch it.
MAX_MEMBER_BYTES = 4 * 1024**3
#: Config entries owned by the container; a caller's config must not contain them.
CONTAINER_KEYS = ("format", "format_version", "library_version", "kind")

CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "weights.npz"
CHECKSUMS_MEMBER = "checksums.json"
_MEMBERS = (CONFIG_MEMBER, WEIGHTS_MEMBER, CHECKSUMS_MEMBER)

# Array names become zip member names inside weights.npz; this alphabet cannot contain a path
# separator, a drive letter or anything np.load would rewrite.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
# bool, signed/unsigned integers, floats, complex. Everything else (object, strings, structured,
# datetime) is either pickled by NumPy or not a model weight.
_ALLOWED_KINDS = frozenset("biufc")
# A fixed timestamp makes the archive bytes depend on the content only.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Everything the zip and npz readers raise on a damaged archive (truncated, garbage, bad CRC,
# unsupported compression or encryption, inconsistent headers).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
    ValueError,
    KeyError,
    OverflowError,
    UnicodeDecodeError,
)


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def save_model(
    path: str | os.PathLike[str],
    kind: str,
    config: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Write a model file atomically.

    Everything is validated and serialised in memory first, so a bad argument writes nothing.
    The archive is then written to a temporary file in the target's directory, flushed and
    fsynced, and renamed onto ``path`` with :func:`os.replace`. On any failure the temporary file
    is removed and an existing file at ``path`` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The model file to create or replace. Its directory must exist.
    kind : str
        What the weights belong to (e.g. ``"SequenceTagger"``); checked by ``load_model(kind=...)``.
    config : Mapping[str, Any]
        A JSON-serialisable mapping with string keys: dicts with string keys, lists, tuples
        (read back as lists), str, int, finite float, bool and None. NumPy scalars are converted
        to the Python scalars they hold; NumPy arrays, NaN, infinities and other objects raise.
        It must not contain the container's keys (:data:`CONTAINER_KEYS`).
    arrays : Mapping[str, numpy.ndarray]
        Name to array. Names match ``[A-Za-z0-9_.-]+``; dtypes are bool, integer, float or
        complex. Arrays are stored in this order with their exact dtype (byte order included)
        and shape.

    Raises
    ------
    TypeError
        A config value that is not JSON data (the message names its key path), a non-string
        key, an array that is not an ndarray, or an array with a non-numeric dtype (object,
        string, structured...).
    ValueError
        An empty or non-string ``kind``, a reserved config key, NaN or infinity in the config,
        or an invalid array name.
    OSError
        The file could not be written.
    """
    path = os.fspath(path)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string, got {kind!r}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    reserved = [key for key in CONTAINER_KEYS if key in config]
    if reserved:
        raise ValueError(
            f"config must not contain the container's own keys {reserved}; they are added by "
            "save_model"
        )
    full_config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
        **_to_json_data(config, "config"),
    }
    # allow_nan=False backs up _to_json_data: the file must be standard JSON for other readers.
    config_bytes = json.dumps(full_config, ensure_ascii=False, indent=2, allow_nan=False).encode(
        "utf-8"
    )
    weights_bytes = _npz_bytes(arrays)
    checksums = {
        CONFIG_MEMBER: hashlib.sha256(config_bytes).hexdigest(),
        WEIGHTS_MEMBER: hashlib.sha256(weights_bytes).hexdigest(),
    }
    checksums_bytes = json.dumps(checksums, indent=2).encode("utf-8")

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as archive:
                _write_member(archive, CONFIG_MEMBER, config_bytes, zipfile.ZIP_DEFLATED)
                _write_member(archive, WEIGHTS_MEMBER, weights_bytes, zipfile.ZIP_STORED)
                _write_member(archive, CHECKSUMS_MEMBER, checksums_bytes, zipfile.ZIP_DEFLATED)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give the model the permissions a plain open() would
        # (or keep those of the file it replaces). By path: chmod on a descriptor is POSIX-only.
        os.chmod(tmp_path, _target_mode(path))
        os.replace(tmp_path, path)
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave an orphaned temporary file
        # either.
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _write_member(archive: zipfile.ZipFile, name: str, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise ``arrays`` as an uncompressed ``.npz`` after validating every name and dtype.

    This is what ``np.savez`` does, written out because ``np.savez(file, **arrays)`` would take an
    array named ``file`` or ``allow_pickle`` for one of its own parameters, and because it pickles
    object arrays instead of refusing them.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of name to ndarray, got {type(arrays).__name__}")
    for name, array in arrays.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"invalid array name {name!r}: names must match [A-Za-z0-9_.-]+ (letters, digits, "
                "'_', '.', '-')"
            )
        if not isinstance(array, np.ndarray):
            raise TypeError(f"array {name!r} must be a numpy.ndarray, got {type(array).__name__}")
        if array.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(
                f"array {name!r} has dtype {array.dtype}; model files hold only bool, integer, "
                "float and complex arrays (never pickled objects)"
            )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as npz:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            # force_zip64: the size is unknown when the member is opened for streaming.
            with npz.open(info, "w", force_zip64=array.nbytes > 2**31) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def _to_json_data(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON data, or raise naming the offending key path ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        # A NumPy scalar (a hyperparameter computed with NumPy) is unambiguous data: convert it.
        return _to_json_data(value.item(), where)
    if isinstance(value, int):
        return int(value)  # an IntEnum or other int subclass becomes a plain int
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                f"{where} is {value!r}; model configs are standard JSON, which has no NaN or "
                "infinity (store None instead)"
            )
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON object keys "
                    "must be strings"
                )
            out[key] = _to_json_data(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        raise TypeError(
            f"{where} is a numpy.ndarray; put arrays in `arrays`, or convert with .tolist()"
        )
    raise TypeError(f"{where} is not JSON data: {type(value).__name__} {value!r:.80}")


def _target_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


def _current_umask() -> int:
    # Reading the umask through /proc avoids briefly changing it, which is process-wide and
    # racy under threads; os.umask is the portable fallback.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_model(
    path: str | os.PathLike[str],
    kind: str | None = None,
    expected: Mapping[str, tuple[tuple[int | None, ...], str]] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate a model file written by :func:`save_model`. Never unpickles anything.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    kind : str, optional
        When given, the file's ``"kind"`` must equal it.
    expected : Mapping[str, tuple[tuple[int | None, ...], str]], optional
        When given, the arrays must be exactly these names, each with this shape and dtype
        (anything ``numpy.dtype`` accepts, e.g. ``"float32"``). ``None`` in a shape matches any
        length along that axis (a vocabulary size the caller does not know in advance).

    Returns
    -------
    config : dict
        The full config as stored, including the container's entries (:data:`CONTAINER_KEYS`:
        ``format``, ``format_version``, ``library_version``, ``kind``). Tuples saved in the
        config come back as lists.
    arrays : dict[str, numpy.ndarray]
        Name to array, in the order they were saved.

    Raises
    ------
    ModelFileError
        Whatever is wrong, with the file named: missing or not a regular file; not a zip archive
        (garbage, truncated); missing or unknown members; a member over
        :data:`MAX_MEMBER_BYTES`; invalid JSON; not a tagger model; written by a newer tagger;
        wrong kind; checksum mismatch; an unreadable ``weights.npz`` or one holding object or
        other non-numeric arrays; an array missing, unexpected, or of the wrong shape or dtype.
    """
    path = os.fspath(path)
    with _open_archive(path) as archive:
        config, config_bytes = _read_and_check_config(path, archive)
        checksums = _check_layout(path, archive)
        _verify_checksum(path, CONFIG_MEMBER, config_bytes, checksums)
        _check_kind(path, config, kind)
        weights_bytes = _read_member(path, archive, WEIGHTS_MEMBER)
        _verify_checksum(path, WEIGHTS_MEMBER, weights_bytes, checksums)
    arrays = _load_npz(path, weights_bytes)
    if expected is not None:
        _check_expected(path, arrays, expected)
    return config, arrays


def read_config(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read only the config of a model file (fast: the weights are neither read nor verified).

    Performs every check of :func:`load_model` that does not involve the weights: the archive,
    its members and their sizes, the JSON, format, format version, the config's checksum and,
    when given, the kind.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    kind : str, optional
        When given, the file's ``"kind"`` must equal it.

    Returns
    -------
    dict
        The full config, including the container's entries, as :func:`load_model` returns it.

    Raises
    ------
    ModelFileError
        As for :func:`load_model`, except the weight checks.
    """
    path = os.fspath(path)
    with _open_archive(path) as archive:
        config, config_bytes = _read_and_check_config(path, archive)
        checksums = _check_layout(path, archive)
        _verify_checksum(path, CONFIG_MEMBER, config_bytes, checksums)
        _check_kind(path, config, kind)
    return config


def file_checksum_status(path: str | os.PathLike[str]) -> str:
    """Say whether a model file is intact, without raising (for ``tagger info``).

    Checks the archive, layout, format version and both checksums, but does not parse the
    weights.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    str
        ``"ok"``, or the message of the first problem found.
    """
    path = os.fspath(path)
    try:
        with _open_archive(path) as archive:
            _config, config_bytes = _read_and_check_config(path, archive)
            checksums = _check_layout(path, archive)
            _verify_checksum(path, CONFIG_MEMBER, config_bytes, checksums)
            weights_bytes = _read_member(path, archive, WEIGHTS_MEMBER)
            _verify_checksum(path, WEIGHTS_MEMBER, weights_bytes, checksums)
    except ModelFileError as exc:
        return str(exc)
    return "ok"


def _error(path: str, message: str) -> ModelFileError:
    return ModelFileError(f"{path}: {message}")


def _open_archive(path: str) -> zipfile.ZipFile:
    if not os.path.exists(path):
        raise _error(path, "no such model file")
    if not os.path.isfile(path):
        raise _error(path, "not a regular file, so not a model file")
    try:
        return zipfile.ZipFile(path, "r")
    except _ZIP_ERRORS as exc:
        raise _error(
            path,
            f"not a tagger model file: not a readable zip archive (truncated or corrupted?): {exc}",
        ) from exc


def _read_member(path: str, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise _error(path, f"the archive has no {name}; not a complete tagger model file") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise _error(
            path,
            f"{name} claims {info.file_size} bytes, more than the limit of "
            f"{MAX_MEMBER_BYTES}; refusing to read it",
        )
    try:
        # read() stops at the declared size and checks the CRC, so a lying header cannot make
        # this read more than the limit just checked.
        return archive.read(info)
    except _ZIP_ERRORS as exc:
        raise _error(path, f"cannot read {name} (truncated or corrupted?): {exc}") from exc


def _read_and_check_config(path: str, archive: zipfile.ZipFile) -> tuple[dict[str, Any], bytes]:
    """Parse config.json and check format and format version, before anything about layout.

    Returns the config and its raw bytes (for the checksum).
    """
    raw = _read_member(path, archive, CONFIG_MEMBER)
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _error(path, f"{CONFIG_MEMBER} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise _error(path, f"{CONFIG_MEMBER} must hold a JSON object, not {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise _error(
            path,
            f"not a tagger model file ({CONFIG_MEMBER} has format "
            f"{config.get('format')!r}, expected {FORMAT!r})",
        )
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _error(path, f"invalid format_version {version!r} in {CONFIG_MEMBER}")
    if version > FORMAT_VERSION:
        written_by = config.get("library_version", "an unknown version")
        raise _error(
            path,
            f"written by a newer tagger (format {version}, tagger {written_by}); this "
            f"tagger ({__version__}) reads format {FORMAT_VERSION} — upgrade tagger",
        )
    return config, raw


def _check_layout(path: str, archive: zipfile.ZipFile) -> dict[str, str]:
    """Require exactly the known members, within size limits; return the parsed checksums."""
    names = [info.filename for info in archive.infolist()]
    if len(set(names)) != len(names):
        raise _error(path, "the archive has duplicate member names; refusing an ambiguous file")
    unknown = sorted(set(names) - set(_MEMBERS))
    if unknown:
        # Stricter than ignoring them: a format-1 file never has other members, so their presence
        # means the file was made or altered by something else.
        raise _error(path, f"unexpected members in the archive: {unknown}")
    missing = [name for name in _MEMBERS if name not in names]
    if missing:
        raise _error(
            path, f"the archive has no {', '.join(missing)}; not a complete tagger model file"
        )
    for info in archive.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise _error(
                path,
                f"{info.filename} claims {info.file_size} bytes, more than the limit of "
                f"{MAX_MEMBER_BYTES}; refusing to read it",
            )
    raw = _read_member(path, archive, CHECKSUMS_MEMBER)
    try:
        checksums = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _error(path, f"{CHECKSUMS_MEMBER} is not valid JSON: {exc}") from exc
    if not isinstance(checksums, dict) or not all(
        isinstance(checksums.get(name), str) for name in (CONFIG_MEMBER, WEIGHTS_MEMBER)
    ):
        raise _error(
            path,
            f"{CHECKSUMS_MEMBER} must map {CONFIG_MEMBER} and {WEIGHTS_MEMBER} to sha256 "
            "hex digests",
        )
    return checksums


def _verify_checksum(path: str, name: str, data: bytes, checksums: dict[str, str]) -> None:
    if hashlib.sha256(data).hexdigest() != checksums[name].lower():
        raise _error(
            path,
            f"checksum mismatch for {name}: the file is corrupted or was modified after "
            "it was saved",
        )


def _check_kind(path: str, config: dict[str, Any], kind: str | None) -> None:
    if kind is not None and config.get("kind") != kind:
        raise _error(path, f"holds a {config.get('kind')!r} model, expected a {kind!r} model")


def _load_npz(path: str, data: bytes) -> dict[str, np.ndarray]:
    """Load ``weights.npz`` from memory after checking every member's name, header and size.

    The pre-pass reads each ``.npy`` header itself, so an object dtype is refused before NumPy
    would even consider unpickling, and a header claiming a huge shape is refused before NumPy
    allocates it.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as npz:
            infos = npz.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise _error(path, f"{WEIGHTS_MEMBER} has duplicate member names")
            for info in infos:
                _check_npy_member(path, npz, info)
    except ModelFileError:
        raise
    except _ZIP_ERRORS as exc:
        raise _error(path, f"{WEIGHTS_MEMBER} is not a readable .npz archive: {exc}") from exc

    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name in npz.files:
                array = npz[name]
                if not isinstance(array, np.ndarray):  # np.load returns raw bytes for non-.npy
                    raise _error(path, f"{WEIGHTS_MEMBER} member {name!r} is not an array")
                arrays[name] = array
    except ModelFileError:
        raise
    except _ZIP_ERRORS as exc:
        # ValueError is what allow_pickle=False raises on an object array.
        raise _error(path, f"cannot load the arrays in {WEIGHTS_MEMBER}: {exc}") from exc
    return arrays


def _check_npy_member(path: str, npz: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    member = info.filename
    stem = member[: -len(".npy")] if member.endswith(".npy") else None
    if stem is None or not _NAME_RE.fullmatch(stem):
        raise _error(path, f"{WEIGHTS_MEMBER} has an unexpected member {member!r}")
    if info.file_size > MAX_MEMBER_BYTES:
        raise _error(
            path,
            f"array {stem!r} claims {info.file_size} bytes, more than the limit of "
            f"{MAX_MEMBER_BYTES}; refusing to read it",
        )
    with npz.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            # Version 3 exists only for structured dtypes with non-ASCII field names.
            raise _error(path, f"array {stem!r} uses .npy format {version}, not supported")
        header_size = fh.tell()
    if dtype.kind not in _ALLOWED_KINDS:
        raise _error(
            path,
            f"array {stem!r} has dtype {dtype}; model files hold only bool, integer, "
            "float and complex arrays, and pickled objects are never loaded",
        )
    count = math.prod(shape)
    if count * dtype.itemsize != info.file_size - header_size:
        raise _error(
            path,
            f"array {stem!r}: its header says shape {shape} of {dtype} "
            f"({count * dtype.itemsize} bytes) but {info.file_size - header_size} bytes follow",
        )


def _check_expected(
    path: str,
    arrays: dict[str, np.ndarray],
    expected: Mapping[str, tuple[tuple[int | None, ...], str]],
) -> None:
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise _error(path, f"missing arrays: {missing}")
    extra = [name for name in arrays if name not in expected]
    if extra:
        raise _error(path, f"unexpected arrays: {extra}")
    for name, (shape, dtype) in expected.items():
        array = arrays[name]
        shape = tuple(shape)
        if len(shape) != array.ndim or any(
            want is not None and want != got for want, got in zip(shape, array.shape, strict=True)
        ):
            raise _error(
                path, f"array {name!r} has shape {array.shape}, expected {_show_shape(shape)}"
            )
        if array.dtype != np.dtype(dtype):
            raise _error(
                path, f"array {name!r} has dtype {array.dtype}, expected {np.dtype(dtype)}"
            )


def _show_shape(shape: tuple[int | None, ...]) -> str:
    # Written like a tuple's repr, with "*" for an axis of any length.
    items = ["*" if n is None else str(n) for n in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
