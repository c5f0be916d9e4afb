"""tagger: sequence tagging and classification with Numba kernels for the CPU and CUDA.

Importing the package compiles nothing and does not import Numba: the estimators and kernels load
on first use.
"""

from ._version import __version__

__all__ = ["CharLanguageModel", "Lemmatizer", "SequenceClassifier", "SequenceTagger",
           "SequenceTransducer", "__version__", "load", "save"]


def __getattr__(name: str):
    # PEP 562 lazy attributes: `import tagger` stays fast (no Numba, no scikit-learn).
    if name in ("CharLanguageModel", "Lemmatizer", "SequenceClassifier", "SequenceTagger",
                "SequenceTransducer", "load", "save"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'tagger' has no attribute {name!r}")
