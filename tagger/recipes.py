"""Pipeline recipes: TOML files naming a task, its data files and estimator parameters.

A recipe (``pipelines/<name>.toml``)::

    description = "What it trains"
    task = "tag"                       # or "classify", or "lm" (a character language model)
    train = "sample-ner/train.conll"   # relative to the data directory
    dev = "sample-ner/dev.conll"       # optional
    # dev_fraction = 0.05              # "lm" only, instead of dev: the last 5% of the lines
    # dataset = "sklearn-digits"       # instead of files: a dataset the library provides
    format = "conll"                   # optional: inferred from the extensions
    data_dir = "../data"               # optional default data directory, relative to the recipe

    [params]                           # estimator parameters
    max_epochs = 10

Data paths are resolved against, in order: the ``data_dir`` argument (``--data-dir``), the
``TAGGER_DATA_DIR`` environment variable, the recipe's own ``data_dir``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_KEYS = {"description", "task", "train", "dev", "format", "data_dir", "params", "tag_column",
         "label_column", "text_column", "dataset", "dev_fraction"}


@dataclass
class Recipe:
    """A loaded recipe with its data paths resolved."""

    name: str
    path: Path
    task: str
    train: Path | None
    dev: Path | None = None
    format: str | None = None
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)
    dataset: str | None = None
    #: For a language model without a ``dev`` file: the last this fraction of the training
    #: file's lines, in file order, is the development text (see :func:`workflows.split_tail`).
    dev_fraction: float | None = None


def recipe_folders() -> list[Path]:
    """Where recipe names are looked up: ``./pipelines``, then the recipes that come with the
    library: ``tagger/pipelines`` in an installed package (with the sample corpora beside them
    in ``tagger/data``), or ``pipelines/`` in a source checkout."""
    package = Path(__file__).resolve().parent
    folders = [Path.cwd() / "pipelines", package / "pipelines", package.parent / "pipelines"]
    return list(dict.fromkeys(folders))


def available_recipes() -> list[str]:
    """Names of the recipes found in :func:`recipe_folders`."""
    names = set()
    for folder in recipe_folders():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def recipe_summaries() -> list[tuple[str, str, str]]:
    """The recipes of :func:`available_recipes` for a listing.

    Returns
    -------
    list of (str, str, str)
        Name, task and description of each recipe, sorted by name; read without resolving the
        data files (those of some recipes are not at hand everywhere). A file that is not valid
        TOML says so as its description.
    """
    summaries = []
    for name in available_recipes():
        try:
            with open(find_recipe(name), "rb") as f:
                config = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError):
            summaries.append((name, "?", "(not a readable recipe)"))
            continue
        summaries.append((name, str(config.get("task", "?")),
                          " ".join(str(config.get("description", "")).split())))
    return summaries


def find_recipe(name_or_path: str) -> Path:
    """The recipe file a name (``sample-ner``) or path (``my.toml``) refers to."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise DataError("no such recipe file", name_or_path)
    for folder in recipe_folders():
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = ", ".join(available_recipes()) or "none found"
    raise DataError(f"no recipe named {name_or_path!r} (known: {known})")


def load_recipe(name_or_path: str, data_dir: str | os.PathLike | None = None) -> Recipe:
    """Read a recipe and resolve its data paths.

    Raises
    ------
    DataError
        A missing or malformed recipe (file and line for TOML syntax errors), unknown keys, or
        data files that do not exist (saying which data directory was used and how to set it).
    """
    path = find_recipe(name_or_path)
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        message = str(exc)
        if line is None:  # before Python 3.14 the line is only in the message
            found = re.search(r"\(at line (\d+), column \d+\)", message)
            line = int(found.group(1)) if found else None
        raise DataError(f"not valid TOML: {message}", str(path), line) from None
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise DataError(f"unknown recipe keys: {', '.join(unknown)}", str(path))
    from .workflows import DATASETS

    if not isinstance(config.get("task"), str):
        raise DataError("the recipe needs a 'task' string", str(path))
    dataset = config.get("dataset")
    if dataset is not None and dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}", str(path))
    if dataset is None and not isinstance(config.get("train"), str):
        raise DataError("the recipe needs a 'train' file (or a 'dataset')", str(path))
    dev_fraction = config.get("dev_fraction")
    if dev_fraction is not None:
        if config["task"] != "lm":
            raise DataError("dev_fraction is for language models (task = \"lm\"); taggers and "
                            "classifiers have the validation_fraction parameter", str(path))
        if "dev" in config:
            raise DataError("give either a dev file or a dev_fraction, not both", str(path))
        if isinstance(dev_fraction, bool) or not isinstance(dev_fraction, (int, float)) \
                or not 0 < dev_fraction < 1:
            raise DataError(f"dev_fraction must be a number between 0 and 1, got "
                            f"{dev_fraction!r}", str(path))
    params = config.get("params", {})
    if not isinstance(params, dict):
        raise DataError("[params] must be a table", str(path))
    if data_dir is None:
        data_dir = os.environ.get("TAGGER_DATA_DIR")
    if data_dir is None:
        data_dir = path.parent / config.get("data_dir", ".")
    data_dir = Path(data_dir)

    def resolve(key: str) -> Path | None:
        value = config.get(key)
        if value is None:
            return None
        resolved = data_dir / value
        if not resolved.is_file():
            raise DataError(f"the recipe's {key} file {value!r} is not in the data directory "
                            f"{data_dir} (give --data-dir or set TAGGER_DATA_DIR)", str(path))
        return resolved

    columns = {k: int(config[k]) for k in ("tag_column", "label_column", "text_column")
               if k in config}
    return Recipe(path.stem, path, config["task"], resolve("train"), resolve("dev"),
                  config.get("format"), config.get("description", ""), dict(params), columns,
                  dataset, None if dev_fraction is None else float(dev_fraction))
