"""What the estimators accept as X: token lists, raw strings, or numeric sequences.

Text arrives as a list of token lists (or, for the classifier, raw strings that a tokenizer
splits). Numeric sequences arrive as a list of float arrays of shape (length_i, n_features), a
list of 1-D arrays (one feature per step), a 3-D array (n, length, n_features) or a 2-D array
(n, length) of univariate sequences. Each check names the offending example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..nn.features import NumericBatch

#: A tab, or anything a reader of lines or of CoNLL-U takes for a line break: what no output
#: of a transducer and no entry of a lemmatizer's dictionary may hold (every output format is
#: line- and tab-separated). Checked at fit and at load, so that every saved model loads.
LINE_OR_TAB = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
#: The longest form and lemma, and the longest UPOS tag, of a lemmatizer's dictionary.
MAX_DICTIONARY_ENTRY, MAX_DICTIONARY_TAG = 1000, 100

TEXT = "text"
NUMERIC = "numeric"
#: A character language model's input: one stream of characters; a transducer's: strings.
CHARS = "chars"
#: A transducer's input of token sequences (lists of strings).
SYMBOLS = "symbols"


def _kind_of(item) -> str:
    if isinstance(item, str):
        return "string"
    if isinstance(item, np.ndarray):
        return NUMERIC if item.dtype.kind in "biuf" else "other"
    if isinstance(item, (list, tuple)):
        if not item:
            return "empty"
        first = item[0]
        if isinstance(first, str):
            return "tokens"
        if isinstance(first, (int, float, np.number, list, tuple, np.ndarray)) and not isinstance(
                first, bool):
            return NUMERIC
    return "other"


def check_sequences(X, name: str = "X", tokenizer: Callable[[str], list[str]] | None = None,
                    expect: str | None = None, allow_empty: bool = True):
    """Validate X and say which kind of input it is.

    Parameters
    ----------
    X : list of token lists, list of str, list of arrays, or ndarray
        The examples.
    name : str
        How error messages call X.
    tokenizer : callable, optional
        Turns raw strings into tokens; without it raw strings are refused.
    expect : {"text", "numeric"}, optional
        The kind the estimator was fitted on; another kind is refused.
    allow_empty : bool
        Whether an example may have no steps (a tagger tags an empty sentence with nothing; a
        classifier cannot classify it).

    Returns
    -------
    kind : {"text", "numeric"}
    examples : list
        Token lists for text; float64 arrays of shape (length, n_features) for numbers.

    Raises
    ------
    TypeError, ValueError
        For anything else, naming the example (and token) at fault.
    """
    if hasattr(X, "sparse") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"Sparse data was passed for {name}, but dense data is required: give a "
                        f"list of sequences or a dense array")
    if not isinstance(X, (list, tuple, np.ndarray)) and hasattr(X, "__array__"):
        X = np.asarray(X)  # array-likes such as pandas frames
    if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3:
            raise ValueError(f"a numeric {name} array must have 3 dimensions (n_sequences, "
                             f"length, n_features) or 2 (n_sequences, length), got {X.ndim}; "
                             f"Reshape your data (a single sequence is a list of one)")
        X = list(X)
    elif isinstance(X, (str, bytes)) or not hasattr(X, "__len__") or not hasattr(X, "__iter__"):
        raise TypeError(f"{name} must be a list of sequences (token lists, strings or numeric "
                        f"arrays), got {type(X).__name__}")
    items = list(X)
    kinds = {_kind_of(item) for item in items} - {"empty"}
    if "other" in kinds:
        i = next(i for i, item in enumerate(items) if _kind_of(item) == "other")
        raise TypeError(f"{name}[{i}] must be a list of tokens, a string or a numeric array, got "
                        f"{type(items[i]).__name__}")
    if len(kinds) > 1:
        raise TypeError(f"{name} mixes kinds of sequences ({', '.join(sorted(kinds))}); give "
                        f"only token lists, only strings or only numeric arrays")
    kind = kinds.pop() if kinds else "tokens"
    if kind == NUMERIC:
        examples = _check_numeric(items, name)
        kind = NUMERIC
    else:
        if kind == "string":
            if tokenizer is None:
                raise TypeError(f"{name} must hold token lists, not strings (split them into "
                                f"tokens first)")
            items = [tokenizer(text) if isinstance(text, str) else text for text in items]
        examples = _check_tokens(items, name)
        kind = TEXT
    if expect is not None and kind != expect:
        raise TypeError(f"the estimator was fitted on {expect} sequences, but {name} holds "
                        f"{kind} sequences")
    if not allow_empty:
        for i, example in enumerate(examples):
            if len(example) == 0:
                raise ValueError(f"{name}[{i}] is an empty sequence: there is nothing to classify")
    return kind, examples


def _check_tokens(items: list, name: str) -> list[list[str]]:
    out = []
    for i, sentence in enumerate(items):
        tokens = list(sentence)
        for j, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"{name}[{i}][{j}] must be a string, got {type(token).__name__}")
            if not token:
                raise ValueError(f"{name}[{i}][{j}] is an empty token")
        out.append(tokens)
    return out


def _check_numeric(items: list, name: str) -> list[np.ndarray]:
    out = []
    n_features = None
    for i, item in enumerate(items):
        try:
            array = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}[{i}] is not a rectangular numeric array") from None
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{name}[{i}] must have shape (length, n_features), got "
                             f"{array.shape}")
        if len(array) and not np.isfinite(array).all():
            t, f = np.argwhere(~np.isfinite(array))[0]
            raise ValueError(f"{name}[{i}] holds NaN or infinity ({array[t, f]}) at step {t}, "
                             f"feature {f}")
        if len(array):
            if n_features is None:
                n_features = array.shape[1]
            elif array.shape[1] != n_features:
                raise ValueError(f"{name}[{i}] has {array.shape[1]} features per step, but the "
                                 f"sequences before it have {n_features}")
        out.append(np.ascontiguousarray(array))
    return out


def n_features_of(examples: Sequence[np.ndarray]) -> int:
    """Features per step of checked numeric examples (0 when all are empty)."""
    return next((x.shape[1] for x in examples if len(x)), 0)


@dataclass
class NumericEncoder:
    """Standardises numeric sequences with statistics learned on the training data.

    Parameters
    ----------
    mean, scale : ndarray (n_features,)
        Per-feature mean and standard deviation over every step of every training sequence
        (a constant feature gets scale 1).
    dtype : numpy dtype
        Dtype of the network's inputs.
    """

    mean: np.ndarray
    scale: np.ndarray
    dtype: type = np.float32

    @classmethod
    def fit(cls, examples: Sequence[np.ndarray], dtype=np.float32,
            name: str = "X") -> NumericEncoder:
        """Learn the statistics of the training sequences.

        Raises
        ------
        ValueError
            When a feature's mean or standard deviation overflows float64 (values near 1e155
            and beyond square to infinity), or a standardised training value is beyond the
            range of ``dtype``: such a feature would silently become a constant.
        """
        steps = np.concatenate([x for x in examples if len(x)], axis=0)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = steps.mean(axis=0)
            scale = steps.std(axis=0)
        bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(scale)))
        if len(bad):
            f = int(bad[0])
            raise ValueError(f"feature {f} of {name} cannot be standardised: its values reach "
                             f"{np.abs(steps[:, f]).max():.3g} in magnitude, and its mean or "
                             f"standard deviation overflows float64; rescale that feature")
        scale[scale < 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
        encoder = cls(mean, scale, dtype)
        encoder.check_features(examples, name)
        return encoder

    def check_features(self, examples: Sequence[np.ndarray], name: str = "X") -> None:
        """A clear error when the examples have another number of features than in training,
        or a value whose standardised form is beyond the range of the network's dtype (it would
        become infinity, and the predictions NaN)."""
        n = n_features_of(examples)
        if n and n != len(self.mean):
            raise ValueError(f"{name} has {n} features per step, but the estimator was fitted "
                             f"with {len(self.mean)}")
        limit = float(np.finfo(self.dtype).max)
        for i, example in enumerate(examples):
            if not len(example):
                continue
            with np.errstate(over="ignore", invalid="ignore"):
                z = np.abs((example - self.mean) / self.scale)
            if z.max() <= limit:  # also False for NaN
                continue
            t, f = np.argwhere(~(z <= limit))[0]
            raise ValueError(f"{name}[{i}] has the value {example[t, f]:.3g} at step {t}, "
                             f"feature {f}: standardised with the training statistics (mean "
                             f"{self.mean[f]:.3g}, scale {self.scale[f]:.3g}) it is beyond "
                             f"{np.dtype(self.dtype).name} range")

    def encode(self, example: np.ndarray) -> np.ndarray:
        """One standardised sequence."""
        if not len(example):
            return np.zeros((0, len(self.mean)), self.dtype)
        return ((example - self.mean) / self.scale).astype(self.dtype)

    def batch(self, examples: Sequence[np.ndarray], encoded=None,
              rng: np.random.Generator | None = None, unk_alpha: float = 0.0) -> NumericBatch:
        """Pad standardised sequences into a :class:`NumericBatch` (the signature of
        :meth:`SentenceEncoder.batch`; word dropout does not apply to numbers)."""
        if encoded is None:
            encoded = [self.encode(x) for x in examples]
        lengths = np.array([len(x) for x in encoded], dtype=np.int64)
        T = int(lengths.max()) if len(lengths) else 0
        x = np.zeros((len(encoded), T, len(self.mean)), self.dtype)
        for b, seq in enumerate(encoded):
            x[b, : len(seq)] = seq
        return NumericBatch(x, lengths)
