"""scikit-learn estimators over the engine."""

from .classifier import SequenceClassifier
from .tagger import SequenceTagger, load, save

__all__ = ["SequenceClassifier", "SequenceTagger", "load", "save"]
