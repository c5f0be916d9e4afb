"""The scikit-learn estimator protocol, without importing scikit-learn at start-up.

The estimators follow scikit-learn's contract (parameters from ``__init__``, ``get_params`` /
``set_params``, tags, ``clone``, use in ``Pipeline`` and ``GridSearchCV``) but do not inherit
from ``sklearn.base.BaseEstimator``: importing scikit-learn takes about 0.8 s (it imports SciPy's
statistics and, when installed, pandas), and a one-sentence ``tagger predict`` would pay it on
every start. scikit-learn only reaches estimators through this protocol (its tools duck-type
them), so the little it needs is here, and scikit-learn itself is imported on demand: by the
methods that only its machinery calls (``__sklearn_tags__``), by training, and on errors.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import numpy as np


class EstimatorBase:
    """Parameters, representation and tags of a scikit-learn estimator (see the module)."""

    #: "classifier" for classifiers; scikit-learn reads it through :meth:`__sklearn_tags__`.
    _estimator_type: str | None = None

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The parameters of ``__init__`` (keyword parameters only, no ``*args``/``**kwargs``),
        sorted, as scikit-learn lists them."""
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for parameter in list(inspect.signature(init).parameters.values())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must name its parameters (no *args "
                                f"or **kwargs)")
            names.append(parameter.name)
        return sorted(names)

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's parameters; with ``deep``, those of parameters that are estimators
        too, as ``name__subname``."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", v) for key, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters (``name__subname`` reaches a parameter that is an estimator).

        Returns
        -------
        self
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict] = defaultdict(dict)
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {self}. Valid "
                                 f"parameters are: {sorted(self._get_param_names())!r}.")
            if delim:
                nested[name][sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        # As scikit-learn prints estimators: the parameters that differ from their defaults.
        signature = inspect.signature(type(self).__init__)
        shown = []
        for name, parameter in list(signature.parameters.items())[1:]:
            value = getattr(self, name, parameter.default)
            if not _same(value, parameter.default):
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        tags = Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=None, regressor_tags=None, classifier_tags=None)
        if self._estimator_type == "classifier":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
            tags.target_tags.required = True
        return tags

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)


def _same(value, default) -> bool:
    if value is default:
        return True
    if type(value) is not type(default):
        return False
    if isinstance(value, np.ndarray):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def check_is_fitted(estimator, attribute: str = "params_") -> None:
    """Raise scikit-learn's ``NotFittedError`` unless ``estimator`` has ``attribute``."""
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet. Call "
                             f"'fit' with appropriate arguments before using this estimator.")
