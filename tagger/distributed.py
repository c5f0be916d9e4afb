"""Batch tagging on Dask, for corpora that outgrow one machine (``pip install "tagger[dask]"``).

* :func:`tag_bag` maps a ``dask.bag`` of texts or token lists to a bag of results, in the input's
  order; :func:`tag_dataframe` adds a column of results to a ``dask.dataframe``; :func:`tag_files`
  tags files on the workers, one output file per input (``tagger predict --engine dask``).
* The model travels as its file's bytes, embedded once in the task graph (one literal task that
  the others depend on, fetched by each worker once), and is loaded once per worker process (a
  per-process cache keyed by the bytes' digest), not once per partition. Being a task, not
  scattered data, it is recomputed if every worker holding it dies: the job goes on.
* :func:`tag_files` writes each output whole or not at all (a hidden temporary renamed when
  complete) and refuses an output folder that holds its inputs.
* Kernels are compiled (or loaded from the compile cache) once per worker, under a file lock on
  the cache directory, so that no two processes compile into it at the same time.
* :func:`local_cluster` starts worker *processes* with the ``spawn`` method (Numba's OpenMP layer
  breaks in a forked child) and gives each worker ``cores // workers`` Numba threads and one BLAS
  thread.

Results come in the input's order. They are those of :func:`tagger.stream.tag_stream` on one
machine bit for bit when every partition but the last holds a multiple of ``batch_size *
workflows.READ_AHEAD`` items (``dask.bag.from_sequence(items, partition_size=k * 8 *
batch_size)``): the reads, sorted by length into batches, are then cut at the same places.
Otherwise the tags and spans are the same and the scores agree to float32 rounding (about 1e-6),
since a batch's composition changes the last bits of its matrix products.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_models: dict[str, object] = {}
_models_lock = threading.Lock()


def _model_bytes(model, trust_tokenizer: bool = False) -> bytes:
    """The model file's bytes: read from a path (and validated here, once, as
    :func:`tagger.load` does; the workers then trust these very bytes), or written from a fitted
    estimator."""
    if isinstance(model, (str, os.PathLike)):
        from .estimators import load

        data = Path(model).read_bytes()
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.tagger"
            path.write_bytes(data)
            load(path, trust_tokenizer=trust_tokenizer)
        return data
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tagger"
        model.save(path)
        return path.read_bytes()


def _warm(model) -> None:
    """Compile (or load from the cache) every kernel the model uses, under an inter-process lock
    on the compile-cache directory."""
    from .kernels._jit import CACHE_DIR as directory

    lock_file = None
    if directory is not None:
        import fcntl

        lock_file = open(Path(directory) / ".warm.lock", "w")  # noqa: SIM115
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        from .workflows import warm_up

        warm_up(model)  # tags and spans, as tag_stream gives them
    finally:
        if lock_file is not None:
            lock_file.close()  # releases the lock


def worker_model(data: bytes):
    """The model for these file bytes in this process, loaded and warmed once."""
    key = hashlib.sha256(data).hexdigest()
    with _models_lock:
        model = _models.get(key)
        if model is None:
            import tempfile

            from .estimators import load

            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.tagger"
                path.write_bytes(data)
                # The bytes were validated by the process that sent them (_model_bytes), with
                # the caller's choice about a custom tokenizer.
                model = load(path, trust_tokenizer=True)
            if getattr(model, "input_type_", "text") == "text":
                _warm(model)
            _models[key] = model
        return model


def _tag_partition(items, data: bytes, batch_size: int) -> list:
    from .stream import tag_stream

    return list(tag_stream(worker_model(data), items, batch_size))


def _in_graph(data: bytes):
    """The bytes as one literal task of the graph, which every task needing the model depends on.

    Not ``client.scatter``: scattered data exists only on the workers holding it, so losing them
    all loses the job ("lost scattered data, which can't be recovered"). A task's value is
    recomputed from the graph the scheduler holds, and reaches each worker once, from a peer.
    The key is unique to this call, so that a job never shares the key with the release of an
    earlier one.
    """
    import dask

    return dask.delayed(data, pure=False)


def tag_bag(model, bag, batch_size: int = 256, trust_tokenizer: bool = False):
    """Tag every item of a ``dask.bag`` (texts or token lists).

    Parameters
    ----------
    model : estimator or path
        A fitted text model, or the path of its model file.
    bag : dask.bag.Bag
        The items.
    batch_size : int
        Items per batch inside a partition.
    trust_tokenizer : bool
        Accept a custom tokenizer pattern in the model file (see :func:`tagger.load`).

    Returns
    -------
    dask.bag.Bag
        One result dict per item (see :mod:`tagger.stream`), in the input's order.
    """
    data = _in_graph(_model_bytes(model, trust_tokenizer))
    return bag.map_partitions(_tag_partition, data, batch_size)


def _tag_frame(frame, column: str, output: str, data: bytes, batch_size: int):
    frame = frame.copy()
    results = _tag_partition(frame[column].tolist(), data, batch_size)
    frame[output] = results
    return frame


def tag_dataframe(model, ddf, column: str, output: str = "tagged", batch_size: int = 256,
                  trust_tokenizer: bool = False):
    """Add a column of results (one dict per row, see :mod:`tagger.stream`) to a
    ``dask.dataframe`` whose ``column`` holds texts or token lists (``trust_tokenizer``: see
    :func:`tag_bag`)."""
    data = _in_graph(_model_bytes(model, trust_tokenizer))
    meta = ddf._meta.copy()
    meta[output] = meta[column].astype(object) if column in meta else None
    return ddf.map_partitions(_tag_frame, column, output, data, batch_size, meta=meta)


_EXTENSIONS = {"conll": ".conll", "conllu": ".conllu", "jsonl": ".jsonl", "tsv": ".tsv",
               "html": ".html"}


def _tag_file(data: bytes, source: str, target: str, fmt: str | None, output_format: str | None,
              batch_size: int, on_error: str) -> dict:
    """Tag one file on a worker into ``target`` (whole or not at all: see
    :func:`tagger._atomic.atomic_output`)."""
    from ._atomic import atomic_output
    from .records import ReadErrors
    from .workflows import predict_files

    errors = ReadErrors()
    with atomic_output(target) as out:
        count = predict_files(worker_model(data), [source], out, fmt, output_format, batch_size,
                              on_error, errors)
    return {"source": source, "target": target, "records": count,
            "skipped": [str(e) for e in errors.skipped]}


def check_output_dir(paths: list[str], output_dir, fmt: str | None = None) -> list[str]:
    """The input files of ``paths`` (folders expanded), after checking that ``output_dir`` is
    not a folder of inputs: the outputs would overwrite inputs of the same name, or mix with them
    (and a later run over the folder would take them for inputs).

    Raises
    ------
    DataError
        ``output_dir`` is a folder given as input, or holds an input file; standard input.
    """
    from ._atomic import same_file_as
    from .errors import DataError
    from .workflows import expand_inputs

    files = expand_inputs(paths, fmt)
    if any(path == "-" for path in files):
        raise DataError("standard input cannot be tagged on a cluster; give files")
    folders = dict.fromkeys([*(p for p in paths if os.path.isdir(p)),
                             *(os.path.dirname(os.path.abspath(f)) for f in files)])
    folder = same_file_as(output_dir, folders)
    if folder is not None:
        raise DataError(f"the output folder is the input folder {folder}: the outputs would "
                        "overwrite or mix with the inputs; choose another folder",
                        os.fspath(output_dir))
    return files


def _remove_temporaries(targets: list[str]) -> None:
    """Remove what a worker killed while writing left beside the targets (its own temporary
    files are removed by every other way of failing)."""
    import glob

    from ._atomic import remove_quietly

    for target in targets:
        # Beside the file a link points to: that is the one atomic_output replaces.
        folder, name = os.path.split(os.path.realpath(target))
        for tmp in glob.glob(os.path.join(glob.escape(folder),
                                          f".{glob.escape(name)}.{'[0-9a-f]' * 8}.tmp")):
            remove_quietly(tmp)


def tag_files(model, paths: list[str], output_dir, client, fmt: str | None = None,
              output_format: str | None = None, batch_size: int = 256,
              on_error: str = "stop", trust_tokenizer: bool = False) -> list[dict]:
    """Tag every file on the workers of ``client``, one output file per input file in
    ``output_dir`` (same name, the output format's extension; ``trust_tokenizer``: see
    :func:`tag_bag`).

    Each output is written to a hidden temporary file in ``output_dir`` and renamed when complete,
    so the folder only ever holds whole outputs; the job survives the loss of any worker.

    Returns
    -------
    list of dict
        Per file: ``source``, ``target``, ``records`` written and ``skipped`` records.

    Raises
    ------
    DataError
        ``output_dir`` is a folder of inputs (see :func:`check_output_dir`), or two inputs have
        the same name; checked before the model or any input is read.
    """
    import dask

    from .errors import DataError
    from .records import input_format
    from .workflows import default_output_format, is_classifier

    paths = check_output_dir(paths, output_dir, fmt)
    data = _model_bytes(model, trust_tokenizer)
    if output_format is None:
        from .estimators import load

        classifier = is_classifier(load(model, trust_tokenizer=True) if isinstance(
            model, (str, os.PathLike)) else model)
        output_format = default_output_format(classifier,
                                              [input_format(p, fmt) for p in paths])
    output_dir = Path(output_dir)
    targets = [str(output_dir / (Path(p).stem + _EXTENSIONS.get(output_format, ".out")))
               for p in paths]
    if len(set(targets)) != len(targets):
        raise DataError("two input files have the same name; their outputs would collide")
    output_dir.mkdir(parents=True, exist_ok=True)
    shared = _in_graph(data)
    tag = dask.delayed(_tag_file, pure=False)
    futures = client.compute([tag(shared, path, target, fmt, output_format, batch_size, on_error)
                              for path, target in zip(paths, targets, strict=True)])
    try:
        return client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        _remove_temporaries(targets)


def local_cluster(n_workers: int = 2, **kwargs):
    """A ``distributed.LocalCluster`` of spawned worker processes with ``cores // workers`` Numba
    threads and one BLAS thread each."""
    import dask
    from distributed import LocalCluster

    threads = max(1, (os.cpu_count() or 1) // n_workers)
    environ = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn",
                          "distributed.nanny.environ": environ}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            **kwargs)


__all__ = ["check_output_dir", "local_cluster", "tag_bag", "tag_dataframe", "tag_files",
           "worker_model"]
