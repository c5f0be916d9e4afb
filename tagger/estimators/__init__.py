"""scikit-learn estimators over the engine."""

from .tagger import SequenceTagger, load, save

__all__ = ["SequenceTagger", "load", "save"]
