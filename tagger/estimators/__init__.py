"""scikit-learn estimators over the engine."""

from .classifier import SequenceClassifier
from .language_model import CharLanguageModel
from .tagger import SequenceTagger, load, save
from .transducer import SequenceTransducer

__all__ = ["CharLanguageModel", "SequenceClassifier", "SequenceTagger", "SequenceTransducer",
           "load", "save"]
