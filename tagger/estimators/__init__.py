"""scikit-learn estimators over the engine."""

from .classifier import SequenceClassifier
from .language_model import CharLanguageModel
from .lemmatizer import Lemmatizer
from .tagger import SequenceTagger, load, save
from .transducer import SequenceTransducer

__all__ = ["CharLanguageModel", "Lemmatizer", "SequenceClassifier", "SequenceTagger",
           "SequenceTransducer", "load", "save"]
