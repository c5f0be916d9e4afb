"""Safe, pickle-free model files, validated before any array is read.

Layout of a model file (format 2)
---------------------------------
A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file:

* 8 bytes: ``N``, the length of the header, unsigned little-endian;
* ``N`` bytes: a UTF-8 JSON object, padded with spaces to a multiple of 8 bytes. Its entry
  ``"__metadata__"`` maps strings to strings:

  ``"format"``            always ``"tagger-model"``;
  ``"format_version"``    ``"2"``;
  ``"config"``            the config as a JSON text: the caller's entries plus the container's own
                          ``"format"``, ``"format_version"``, ``"library_version"`` and ``"kind"``;
  ``"config_sha256"``     the SHA-256 of the ``"config"`` text (UTF-8);
  ``"data_sha256"``       the SHA-256 of all the bytes after the header.

  Every other entry is an array: ``{"dtype": "F32", "shape": [3, 4], "data_offsets": [b, e]}``,
  its bytes at ``b:e`` after the header, little-endian, C order;
* the arrays' bytes, in order of decreasing item size, then name (each array aligned to its item
  size), with no gap and nothing after them.

Other safetensors readers (``safetensors.numpy.load_file``) read these files, and this module reads
theirs when they carry the metadata above.

Why this container (measured on a SequenceTagger of the sample corpus, 2.6 MB of weights):
the format-1 container (a zip holding ``config.json`` and a ``weights.npz``) had to be hardened
member by member against compression bombs (a 3.9 MB file made NumPy allocate 7.9 GB), its arrays'
headers sit inside a nested archive, and its readers return copies. This layout has no compression
at all, so a file's arrays can never be larger than the file; every array's name, dtype, shape and
place are in one bounded header that is checked against the model's config before one byte of
array data is read; and loading is one read of the file into a buffer that the arrays then view
without copying. The format is read by a few dozen lines here rather than by the ``safetensors``
package: checking the header against the expected arrays *before* reading, verifying the digest of
the data, and building writable arrays over one buffer are what a model loader needs, and the
package's own readers do other things in another order. The package is the tests' oracle: files
written here must load there, and the other way round.

What is checked, in order, before any array is built: the file is a regular file; the header
length is within :data:`MAX_HEADER_BYTES` and the file; the header is a JSON object; format and
format version (a newer file says "upgrade tagger"); the config's digest; the kind; every array
entry's name, dtype, shape and offsets (the arrays tile the data exactly); then the caller's
``expected`` arrays, derived from the config alone (names, shapes, dtypes); only then is the data
read, its digest verified, and every float array checked to be finite. The digests detect
corruption, not forgery: a forger recomputes them. What makes a hostile file harmless is that
nothing in it is code (no pickle anywhere), and that nothing is allocated or computed from it
before it has been checked against what its own config implies.

Format 1 (zip) files are still read, with the same checks: their members must be stored without
compression (as this project always wrote them), so they cannot hide a bomb either, and each
array's ``.npy`` header is checked against ``expected`` before its data is read.

Files are byte-for-byte reproducible: the same kind, config and arrays give the same bytes.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ModelFileError

__all__ = [
    "CONTAINER_KEYS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "ModelHeader",
    "file_checksum_status",
    "load_model",
    "read_config",
    "read_header",
    "save_model",
]

#: Value of the ``"format"`` entry of every model file's config.
FORMAT = "tagger-model"
#: The newest layout this tagger writes and reads.
FORMAT_VERSION = 2
#: Largest header (config and array table) accepted; the config holds the vocabularies, about
#: 20 bytes a word. Tests may patch it.
MAX_HEADER_BYTES = 64 * 1024**2
#: Largest config.json of a format-1 file, and the most it may have been compressed (JSON
#: vocabularies deflate about 3 to 5 times; a compression bomb a thousand times).
MAX_LEGACY_CONFIG_BYTES = 64 * 1024**2
_MAX_JSON_RATIO = 20.0
#: Largest number of arrays and of dimensions per array in a file.
MAX_ARRAYS = 100_000
MAX_NDIM = 8
#: Config entries owned by the container; a caller's config must not contain them.
CONTAINER_KEYS = ("format", "format_version", "library_version", "kind")

#: An expectation for one array: its shape (``None`` for an axis of any length) and dtype, and
#: optionally whether it must be present (default True).
ArrayExpectation = tuple
Expected = Mapping[str, ArrayExpectation]

# Array names: this alphabet cannot contain a path separator or anything a reader would rewrite.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_METADATA = "__metadata__"
# safetensors dtype codes <-> little-endian NumPy dtypes.
_CODES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
          "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
_DTYPES = {np.dtype(v): k for k, v in _CODES.items()}


def _code_of(dtype: np.dtype) -> str | None:
    return _DTYPES.get(np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).itemsize > 1
                       else np.dtype(dtype))


@dataclass(frozen=True)
class ModelHeader:
    """What a model file says about itself, read without its array data.

    Attributes
    ----------
    config : dict
        The full config, with the container's entries (:data:`CONTAINER_KEYS`).
    arrays : dict[str, tuple[tuple[int, ...], numpy.dtype]]
        Name to shape and dtype, in the file's order.
    format_version : int
        The file's layout (1: zip, 2: safetensors).
    data_bytes : int
        Bytes of array data the file holds.
    """

    config: dict
    arrays: dict
    format_version: int
    data_bytes: int


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
    The file is then written to a hidden temporary file in the target's directory, flushed and
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
        Name to array. Names match ``[A-Za-z0-9_.-]+``; dtypes are bool, integers of 8 to 64
        bits, float16, float32 or float64; float arrays must be finite. Arrays are stored
        little-endian in C order, with their dtype and shape.

    Raises
    ------
    TypeError
        A config value that is not JSON data (the message names its key path), a non-string
        key, an array that is not an ndarray, or an array of another dtype.
    ValueError
        An empty or non-string ``kind``, a reserved config key, NaN or infinity in the config,
        an invalid array name, or a float array holding NaN or infinity.
    OSError
        The file could not be written.
    """
    path = os.fspath(path)
    data = model_bytes(kind, config, arrays)
    # A link is followed: the file it points to is replaced, the link kept. Anything but a
    # regular file (a device such as /dev/null, a FIFO, a directory) is refused: renaming the
    # new file over it would replace the device node itself.
    path = os.path.realpath(path)
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ValueError(f"{path} is not a regular file; a model file is written to a regular "
                         "file (or a new path)")
    directory = os.path.dirname(path)
    fd, tmp_path = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            fd = -1
        # mkstemp creates the file 0600; give the model the permissions a plain open() would
        # (or keep those of the file it replaces). By path: chmod on a descriptor is POSIX-only.
        os.chmod(tmp_path, _target_mode(path))
        os.replace(tmp_path, path)
    except BaseException:
        # BaseException: a KeyboardInterrupt mid-write must not leave an orphaned temporary file.
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def model_bytes(kind: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes :func:`save_model` writes (see it for the parameters and errors)."""
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
    config_text = json.dumps(full_config, ensure_ascii=False, separators=(",", ":"),
                             allow_nan=False)
    order, blobs = _array_blobs(arrays)
    table: dict[str, Any] = {}
    offset = 0
    for name in order:
        array, blob = blobs[name]
        table[name] = {"dtype": _code_of(array.dtype), "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
    digest = hashlib.sha256()
    for name in order:
        digest.update(blobs[name][1])
    header = {_METADATA: {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": config_text,
        "config_sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
        "data_sha256": digest.hexdigest(),
    }, **table}
    header_bytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    out = bytearray(len(header_bytes).to_bytes(8, "little"))
    out += header_bytes
    for name in order:
        out += blobs[name][1]
    return bytes(out)


def _array_blobs(arrays: Mapping[str, np.ndarray]):
    """Validate ``arrays``; return the storage order and each array with its little-endian bytes.

    The order is safetensors' own: decreasing item size (so that every array is aligned), then
    name.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of name to ndarray, got {type(arrays).__name__}")
    blobs = {}
    for name, array in arrays.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name == _METADATA:
            raise ValueError(
                f"invalid array name {name!r}: names must match [A-Za-z0-9_.-]+ (letters, digits, "
                "'_', '.', '-')"
            )
        if not isinstance(array, np.ndarray):
            raise TypeError(f"array {name!r} must be a numpy.ndarray, got {type(array).__name__}")
        if _code_of(array.dtype) is None:
            raise TypeError(
                f"array {name!r} has dtype {array.dtype}; model files hold only bool, integer "
                "and float arrays (never pickled objects)"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(
                f"array {name!r} holds NaN or infinity; refusing to save a model with non-finite "
                "weights (training diverged?)"
            )
        little = array.astype(array.dtype.newbyteorder("<"), copy=False) \
            if array.dtype.itemsize > 1 else array
        blobs[name] = (array, np.ascontiguousarray(little).tobytes())
    order = sorted(blobs, key=lambda n: (-blobs[n][0].dtype.itemsize, n))
    return order, blobs


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
    expected: Expected | Callable[[dict], Expected] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate a model file written by :func:`save_model`. Never unpickles anything.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    kind : str, optional
        When given, the file's ``"kind"`` must equal it.
    expected : Mapping or callable, optional
        The arrays the file must hold: name to ``(shape, dtype)`` or ``(shape, dtype,
        required)``, where ``None`` in a shape matches any length along that axis and an array
        with ``required`` False may be absent. A callable is given the config (already checked
        for format, version, digest and kind) and returns that mapping; it may raise
        :class:`ModelFileError` for a config it refuses. Every array is checked against it
        before any array data is read; arrays it does not name are refused.

    Returns
    -------
    config : dict
        The full config as stored, including the container's entries (:data:`CONTAINER_KEYS`).
        Tuples saved in the config come back as lists.
    arrays : dict[str, numpy.ndarray]
        Name to array (writable, aligned, C-contiguous, native byte order).

    Raises
    ------
    ModelFileError
        Whatever is wrong, with the file named: missing or not a regular file, truncated,
        garbage, an oversized or malformed header, not a tagger model, written by a newer
        tagger, wrong kind, a digest mismatch, arrays missing, unexpected or of the wrong shape
        or dtype, or float arrays holding NaN or infinity.
    """
    path = os.fspath(path)
    with _open(path) as fh:
        if _is_zip(fh):
            return _load_legacy(path, fh, kind, expected, read_data=True)
        header, table, data_start = _read_header(path, fh)
        _check_kind(path, header.config, kind)
        _check_expected(path, header.config, header.arrays, expected)
        data = _read_data(path, fh, data_start, header.data_bytes)
    metadata = _metadata_of(path, table)
    _verify_digest(path, "array data", data, metadata["data_sha256"])
    arrays = {}
    for name, (shape, dtype) in header.arrays.items():
        begin, end = table[name]["data_offsets"]
        array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=begin)
        array = array.reshape(shape)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.aligned:
            array = array.copy()
        arrays[name] = array
    _check_finite(path, arrays)
    return header.config, arrays


def read_header(path: str | os.PathLike[str], kind: str | None = None) -> ModelHeader:
    """Read a model file's config and array table (names, shapes, dtypes) without its data.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.
    kind : str, optional
        When given, the file's ``"kind"`` must equal it.

    Returns
    -------
    ModelHeader

    Raises
    ------
    ModelFileError
        As for :func:`load_model`, except what needs the data (its digest, finiteness).
    """
    path = os.fspath(path)
    with _open(path) as fh:
        if _is_zip(fh):
            header = _load_legacy(path, fh, kind, None, read_data=False)
        else:
            header = _read_header(path, fh)[0]
    _check_kind(path, header.config, kind)
    return header


def read_config(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read only the config of a model file (fast: the array data is neither read nor verified).

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
        As for :func:`read_header`.
    """
    return read_header(path, kind).config


def file_checksum_status(path: str | os.PathLike[str]) -> str:
    """Say whether a model file is intact, without raising (for ``tagger info``).

    Checks the layout, format version and both digests; the arrays are not built.

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
        with _open(path) as fh:
            if _is_zip(fh):
                _load_legacy(path, fh, None, None, read_data=True, verify_only=True)
                return "ok"
            header, table, data_start = _read_header(path, fh)
            data = _read_data(path, fh, data_start, header.data_bytes)
        _verify_digest(path, "array data", data, _metadata_of(path, table)["data_sha256"])
    except ModelFileError as exc:
        return str(exc)
    return "ok"


def _error(path: str, message: str) -> ModelFileError:
    return ModelFileError(f"{path}: {message}")


def _open(path: str):
    # Opened first, without blocking (a FIFO swapped in would hang a blocking open), and then
    # checked on the descriptor: what is read is what was checked.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _error(path, "no such model file") from None
    except OSError as exc:
        raise _error(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _error(path, "not a regular file, so not a model file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_zip(fh) -> bool:
    start = fh.read(4)
    fh.seek(0)
    return start == b"PK\x03\x04"


def _file_size(fh) -> int:
    return os.fstat(fh.fileno()).st_size


def _read_exactly(path: str, fh, n: int, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _error(path, f"truncated: {what} needs {n} bytes, the file has {len(data)} left")
    return data


def _read_header(path: str, fh) -> tuple[ModelHeader, dict, int]:
    """Parse and check the header of a format-2 file: config, metadata, the array table."""
    size = _file_size(fh)
    if size < 8:
        raise _error(path, f"not a tagger model file: {size} bytes, too short for a header")
    n = int.from_bytes(_read_exactly(path, fh, 8, "the header length"), "little")
    if n > MAX_HEADER_BYTES:
        raise _error(path, f"not a tagger model file: a header of {n} bytes claimed, more than "
                           f"the limit of {MAX_HEADER_BYTES}")
    if n < 2 or n > size - 8:
        raise _error(path, f"not a tagger model file (truncated or corrupted?): a header of {n} "
                           f"bytes in a file of {size}")
    raw = _read_exactly(path, fh, n, "the header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(path, f"not a tagger model file: the header is not UTF-8 ({exc})") \
            from None
    table = _json_loads(path, text)
    if not isinstance(table, dict):
        raise _error(path, "not a tagger model file: the header is not a JSON object")
    metadata = table.get(_METADATA)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _error(path, "not a tagger model file (its header has no tagger metadata)")
    _check_version(path, metadata.get("format_version"), metadata)
    metadata = _metadata_of(path, table)
    if metadata["format_version"] != str(FORMAT_VERSION):
        raise _error(path, f"a safetensors model file must be format {FORMAT_VERSION}, not "
                           f"{metadata['format_version'][:10]!r}")
    config_text = metadata["config"]
    _verify_digest(path, "the config", config_text.encode("utf-8"), metadata["config_sha256"])
    config = _json_loads(path, config_text)
    if not isinstance(config, dict):
        raise _error(path, f"the config must be a JSON object, not {type(config).__name__}")
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise _error(path, "the config's format entries disagree with the header")
    arrays = _check_table(path, table, size - 8 - n)
    return ModelHeader(config, arrays, FORMAT_VERSION, size - 8 - n), table, 8 + n


#: How many JSON containers and values a header may hold. Parsing makes a Python object of each
#: (a list of 28 bytes for the 3 bytes of "[],"): without a count, a header within the size
#: limit could take gigabytes. A vocabulary of a million words is about 2 million values.
MAX_JSON_CONTAINERS = 500_000
MAX_JSON_VALUES = 6_000_000


def _not_json(value: str):
    raise ValueError(f"{value} is not JSON (nor a finite number)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _not_json(text[:20])
    return value


def _bounded_int(text: str) -> int:
    # 128 bits: a random generator's state (in a checkpoint) is that wide.
    if len(text.lstrip("-")) > 39 or abs(value := int(text)) >= 2**128:
        raise ValueError(f"the integer {text[:20]}... is too large")
    return value


def _json_loads(path: str, text: str):
    """Standard JSON only (no NaN or Infinity, floats within float64, integers within 128
    bits), with the
    number of containers and values bounded before it is parsed."""
    containers = text.count("[") + text.count("{")
    values = text.count(",") + text.count(":")
    if containers > MAX_JSON_CONTAINERS or values > MAX_JSON_VALUES:
        raise _error(path, f"a header of {containers:,} JSON lists and objects and {values:,} "
                           f"values, more than a model holds ({MAX_JSON_CONTAINERS:,} and "
                           f"{MAX_JSON_VALUES:,}); refusing to parse it")
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:
        raise _error(path, f"not valid JSON: {str(exc)[:200]}") from None


def _check_version(path: str, version, holder: Mapping) -> None:
    if isinstance(version, str) and version.isdigit() and len(version) < 6:
        version = int(version)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _error(path, f"invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        written_by = holder.get("library_version", "an unknown version")
        if not isinstance(written_by, str):
            written_by = "an unknown version"
        raise _error(
            path,
            f"written by a newer tagger (format {version}, tagger {written_by[:40]}); this "
            f"tagger ({__version__}) reads formats up to {FORMAT_VERSION}: upgrade tagger",
        )


def _metadata_of(path: str, table: dict) -> dict[str, str]:
    metadata = table[_METADATA]
    keys = ("format", "format_version", "config", "config_sha256", "data_sha256")
    if not all(isinstance(metadata.get(k), str) for k in keys):
        raise _error(path, f"the header's {_METADATA} must hold the strings {', '.join(keys)}")
    return metadata


def _check_table(path: str, table: dict, data_bytes: int) -> dict:
    """The array entries of a header, checked: names, dtypes, shapes, and offsets that tile the
    data exactly."""
    entries = [(k, v) for k, v in table.items() if k != _METADATA]
    if len(entries) > MAX_ARRAYS:
        raise _error(path, f"{len(entries)} arrays, more than the limit of {MAX_ARRAYS}")
    arrays, spans = {}, []
    for name, entry in entries:
        if not _NAME_RE.fullmatch(name):
            raise _error(path, f"invalid array name {name[:80]!r}")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _error(path, f"array {name!r}: the entry must hold exactly dtype, shape and "
                               "data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if code not in _CODES:
            raise _error(path, f"array {name!r} has dtype {str(code)[:20]!r}; model files hold "
                               f"only {', '.join(_CODES)}")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
                _is_count(d) for d in shape):
            raise _error(path, f"array {name!r}: invalid shape {str(shape)[:80]}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(
                _is_count(d) for d in offsets) or offsets[0] > offsets[1]:
            raise _error(path, f"array {name!r}: invalid data_offsets {str(offsets)[:80]}")
        dtype = np.dtype(_CODES[code])
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _error(path, f"array {name!r}: shape {tuple(shape)} of {dtype.name} takes "
                               f"{nbytes} bytes but its offsets span {offsets[1] - offsets[0]}")
        if offsets[0] % dtype.itemsize:
            raise _error(path, f"array {name!r} is not aligned to its item size")
        arrays[name] = (tuple(shape), dtype)
        spans.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise _error(path, f"array {name!r} starts at {begin}, expected {position}: the "
                               "arrays overlap or leave a gap")
        position = end
    if position != data_bytes:
        raise _error(path, f"the arrays take {position} bytes but the file holds {data_bytes} "
                           "after the header (truncated, or extra bytes)")
    return arrays


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**48


def _read_data(path: str, fh, start: int, n: int) -> bytearray:
    fh.seek(start)
    data = bytearray(n)
    got = fh.readinto(data)
    if got != n:
        raise _error(path, f"truncated: the arrays need {n} bytes, the file has {got}")
    return data


def _verify_digest(path: str, what: str, data, digest: str) -> None:
    if hashlib.sha256(data).hexdigest() != str(digest).lower():
        raise _error(path, f"checksum mismatch for {what}: the file is corrupted or was modified "
                           "after it was saved")


def _check_kind(path: str, config: dict[str, Any], kind: str | None) -> None:
    if kind is not None and config.get("kind") != kind:
        raise _error(path, f"holds a {str(config.get('kind'))[:80]!r} model, expected a "
                           f"{kind!r} model")


def _check_expected(path: str, config: dict, arrays: Mapping[str, tuple],
                    expected: Expected | Callable[[dict], Expected] | None) -> None:
    """Compare the file's array table with ``expected`` (or what it derives from ``config``)."""
    if expected is None:
        return
    if callable(expected):
        expected = expected(config)
    missing = [name for name, want in expected.items()
               if name not in arrays and (len(want) < 3 or want[2])]
    if missing:
        raise _error(path, f"missing arrays: {_short(missing)}")
    extra = [name for name in arrays if name not in expected]
    if extra:
        raise _error(path, f"unexpected arrays: {_short(extra)}")
    for name, (shape, dtype) in arrays.items():
        want_shape, want_dtype = tuple(expected[name][0]), np.dtype(expected[name][1])
        if len(want_shape) != len(shape) or any(
                w is not None and w != g for w, g in zip(want_shape, shape, strict=True)):
            raise _error(path, f"array {name!r} has shape {tuple(shape)}, expected "
                               f"{_show_shape(want_shape)}")
        if np.dtype(dtype).newbyteorder("=") != want_dtype.newbyteorder("="):
            raise _error(path, f"array {name!r} has dtype {np.dtype(dtype).name}, expected "
                               f"{want_dtype.name}")


def _check_finite(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise _error(path, f"array {name!r} holds NaN or infinity; a model with non-finite "
                               "weights would predict garbage")


def _short(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _show_shape(shape: tuple[int | None, ...]) -> str:
    # Written like a tuple's repr, with "*" for an axis of any length.
    items = ["*" if n is None else str(n) for n in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


# --------------------------------------------------------------------------------------------
# format 1: a zip of config.json, weights.npz (uncompressed) and checksums.json
# --------------------------------------------------------------------------------------------

_V1_CONFIG, _V1_WEIGHTS, _V1_CHECKSUMS = "config.json", "weights.npz", "checksums.json"
_V1_MEMBERS = (_V1_CONFIG, _V1_WEIGHTS, _V1_CHECKSUMS)
# Everything the zip and npy readers raise on a damaged archive.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error,
               RuntimeError, NotImplementedError, ValueError, KeyError, OverflowError,
               UnicodeDecodeError, SyntaxError, TypeError, MemoryError)


def _load_legacy(path: str, fh, kind, expected, read_data: bool, verify_only: bool = False):
    """Read a format-1 file with the checks of format 2: every member bounded before it is read,
    every array's header checked against ``expected`` before its data."""
    try:
        archive = zipfile.ZipFile(fh)
    except _ZIP_ERRORS as exc:
        raise _error(path, f"not a tagger model file: not a readable zip archive (truncated or "
                           f"corrupted?): {exc}") from None
    with archive:
        try:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names) or sorted(names) != sorted(_V1_MEMBERS):
                raise _error(path, f"not a complete tagger model file: the archive holds "
                                   f"{_short(names)}, expected {', '.join(_V1_MEMBERS)}")
            config_bytes = _v1_member(path, archive, _V1_CONFIG, MAX_LEGACY_CONFIG_BYTES,
                                      max_ratio=_MAX_JSON_RATIO)
            try:
                text = config_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _error(path, f"{_V1_CONFIG} is not UTF-8: {exc}") from None
            config = _json_loads(path, text)
            if not isinstance(config, dict) or config.get("format") != FORMAT:
                raise _error(path, f"not a tagger model file ({_V1_CONFIG} has no format "
                                   f"{FORMAT!r})")
            _check_version(path, config.get("format_version"), config)
            if config["format_version"] != 1:
                raise _error(path, "a zip model file must be format 1")
            checksums = _json_loads(path, _v1_member(path, archive, _V1_CHECKSUMS, 4096)
                                    .decode("utf-8"))
            if not isinstance(checksums, dict) or not all(
                    isinstance(checksums.get(m), str) for m in (_V1_CONFIG, _V1_WEIGHTS)):
                raise _error(path, f"{_V1_CHECKSUMS} must map {_V1_CONFIG} and {_V1_WEIGHTS} to "
                                   "sha256 digests")
            _verify_digest(path, _V1_CONFIG, config_bytes, checksums[_V1_CONFIG])
            _check_kind(path, config, kind)
            weights = archive.getinfo(_V1_WEIGHTS)
            if weights.compress_type != zipfile.ZIP_STORED:
                raise _error(path, f"{_V1_WEIGHTS} is compressed; tagger never wrote it so, "
                                   "refusing a possible compression bomb")
            if weights.compress_size != weights.file_size or \
                    weights.file_size > _file_size(fh):
                raise _error(path, f"{_V1_WEIGHTS} claims {weights.file_size} bytes, more "
                                   "than the file holds")
            with archive.open(weights) as member:
                headers = _v1_array_headers(path, member, weights.file_size)
            arrays_table = {name: (shape, dtype) for name, (shape, dtype, _) in headers.items()}
            header = ModelHeader(config, arrays_table, 1, weights.file_size)
            if not read_data:
                return header
            _check_expected(path, config, arrays_table, expected)
            weights_bytes = _v1_member(path, archive, _V1_WEIGHTS, weights.file_size)
        except ModelFileError:
            raise
        except _ZIP_ERRORS as exc:
            raise _error(path, f"cannot read the archive (truncated or corrupted?): "
                               f"{type(exc).__name__}: {exc}") from None
    _verify_digest(path, _V1_WEIGHTS, weights_bytes, checksums[_V1_WEIGHTS])
    if verify_only:
        return None
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(weights_bytes)) as npz:
            for name, (shape, dtype, info) in headers.items():
                with npz.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                if array.shape != shape or array.dtype != dtype:
                    raise _error(path, f"array {name!r} changed while it was read")
                # (np.ascontiguousarray would make a 0-d array 1-d.)
                arrays[name] = array.astype(array.dtype.newbyteorder("="), order="C", copy=False)
    except ModelFileError:
        raise
    except _ZIP_ERRORS as exc:
        raise _error(path, f"cannot load the arrays in {_V1_WEIGHTS}: {exc}") from None
    _check_finite(path, arrays)
    return config, arrays


def _v1_member(path: str, archive: zipfile.ZipFile, name: str, limit: int,
               max_ratio: float | None = None) -> bytes:
    info = archive.getinfo(name)
    if max_ratio is not None and info.file_size > max_ratio * info.compress_size + 65536:
        raise _error(path, f"{name} would inflate {info.compress_size} compressed bytes to "
                           f"{info.file_size}, far more than JSON compresses; refusing a "
                           "possible compression bomb")
    if info.file_size > limit:
        raise _error(path, f"{name} claims {info.file_size} bytes, more than the limit of "
                           f"{limit}; refusing to read it")
    # The reader stops at the declared size (and checks the CRC), so this reads at most `limit`.
    return archive.read(info)


def _v1_array_headers(path: str, member, size: int) -> dict:
    """Name to (shape, dtype, zip entry) of each array in weights.npz, from the headers alone.
    Every member must lie within the ``size`` bytes of weights.npz, stored as it is: no array
    can then claim more bytes than the file holds."""
    headers = {}
    with zipfile.ZipFile(member) as npz:
        infos = npz.infolist()
        if len(infos) > MAX_ARRAYS:
            raise _error(path, f"{len(infos)} arrays, more than the limit of {MAX_ARRAYS}")
        for info in infos:
            stem = info.filename[:-4] if info.filename.endswith(".npy") else ""
            if not _NAME_RE.fullmatch(stem) or stem in headers:
                raise _error(path, f"{_V1_WEIGHTS} has an unexpected member "
                                   f"{info.filename[:80]!r}")
            if info.compress_type != zipfile.ZIP_STORED:
                raise _error(path, f"array {stem!r} is compressed; tagger never wrote it so, "
                                   "refusing a possible compression bomb")
            if info.compress_size != info.file_size or \
                    info.header_offset + info.compress_size > size:
                raise _error(path, f"array {stem!r} claims {info.file_size} bytes, more than "
                                   f"{_V1_WEIGHTS} holds")
            with npz.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise _error(path, f"array {stem!r} uses .npy format {version}, not supported")
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read(fh, max_header_size=10_000)
                header_size = fh.tell()
            if any(d < 0 for d in shape):
                raise _error(path, f"array {stem!r} has an invalid shape {shape}")
            if dtype.kind not in "biufc" or dtype.hasobject or len(shape) > MAX_NDIM:
                raise _error(path, f"array {stem!r} has dtype {dtype}; model files hold only "
                                   "bool, integer and float arrays, and pickled objects are "
                                   "never loaded")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes != info.file_size - header_size:
                raise _error(path, f"array {stem!r}: its header says shape {shape} of {dtype} "
                                   f"({nbytes} bytes) but {info.file_size - header_size} bytes "
                                   "follow")
            headers[stem] = (tuple(shape), dtype, info)
    return headers
